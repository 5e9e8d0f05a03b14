"""ros2 launch sparsett_ros tracker.launch.py image:=/camera/color/image_raw checkpoint:=/path/model.pkl

Arguments (`--show-args` lists them with their defaults): image, camera_info, checkpoint, device,
namespace, params_file. `node_description()` turns their values into launch_ros Node keyword
arguments; launch_ros hands the params file and the non-empty checkpoint/device overrides to the
node as parameter files. `launch` / `launch_ros` are imported only when the file is launched.
"""
from __future__ import annotations

import os

ARGUMENTS = {  # name -> (default, description)
    "image": ("/camera/image_raw", "sensor_msgs/Image topic to track in (image/compressed is <image>/compressed)"),
    "camera_info": ("", "CameraInfo topic (default: camera_info beside the image topic)"),
    "checkpoint": ("", "SparseTT checkpoint; empty keeps the params file's value"),
    "device": ("", "auto | cuda | cpu; empty keeps the params file's value"),
    "namespace": ("", "namespace of the node"),
    "params_file": ("", "parameters YAML (default: the package's config/tracker.yaml)"),
}


def node_description(image: str, checkpoint: str = "", device: str = "", namespace: str = "",
                     params_file: str = "", camera_info: str = "") -> dict:
    """Keyword arguments for launch_ros.actions.Node: package, executable, parameters, remappings."""
    if not camera_info:
        camera_info = image.rsplit("/", 1)[0] + "/camera_info" if "/" in image.strip("/") else "camera_info"
    overrides = {name: value for name, value in (("checkpoint", checkpoint), ("device", device)) if value}
    return {
        "package": "sparsett_ros",
        "executable": "tracker_node",
        "name": "tracker_node",
        "namespace": namespace,
        "output": "screen",
        "parameters": [params_file] + ([overrides] if overrides else []),
        "remappings": [("image", image), ("image/compressed", image + "/compressed"), ("camera_info", camera_info)],
    }


def _launch_setup(context, *args, **kwargs):
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    if not values["params_file"]:
        from ament_index_python.packages import get_package_share_directory

        values["params_file"] = os.path.join(get_package_share_directory("sparsett_ros"), "config", "tracker.yaml")
    return [Node(**node_description(**values))]


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()]
    return LaunchDescription(declared + [OpaqueFunction(function=_launch_setup)])

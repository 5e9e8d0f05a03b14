"""launch_testing: the package's launch file, started by the launch system inside pytest.

The form ROS 2 packages use for launch tests: `generate_test_description()` includes
`share/sparsett_ros/launch/tracker.launch.py` of the colcon install (default parameters: the
shipped SparseTT-Lite weights), active tests talk to the running node over DDS, and post-shutdown
tests check how it ended (`assertExitCodes`: launch_testing stops it with SIGINT, which must end
in exit code 0, without a traceback).
"""
from __future__ import annotations

import os
import unittest

import pytest

pytest.importorskip("launch_testing", reason="the ROS 2 launch system is not installed (scripts/setup.sh "
                    "installs it from ../shared/ros2_tools where no ROS 2 distribution is sourced)")

import launch_testing  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import GroupAction, IncludeLaunchDescription, SetEnvironmentVariable  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

NAMESPACE = "lt"
IMAGE_TOPIC = "/lt/camera/image_raw"
NODE = f"/{NAMESPACE}/tracker_node"
# what `source install/setup.bash` changes; set inside a scoped group, so pytest's own environment is untouched
INSTALL_VARIABLES = ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH", "LD_LIBRARY_PATH", "PATH",
                     "PYTHONPATH")


@pytest.mark.launch_test
def generate_test_description():
    from conftest import ros_guard
    from launch_tools import colcon_install, install_env, package_prefix

    ros_guard()
    install = colcon_install()  # built once per pytest process, shared with the other launch tests
    env = install_env(install)
    launch_file = package_prefix(install) / "share" / "sparsett_ros" / "launch" / "tracker.launch.py"
    tracker = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(launch_file)),
                                       launch_arguments={"image": IMAGE_TOPIC, "namespace": NAMESPACE}.items())
    setenv = [SetEnvironmentVariable(name, env[name]) for name in INSTALL_VARIABLES
              if name in env and env[name] != os.environ.get(name)]
    return LaunchDescription([GroupAction(setenv + [tracker], scoped=True), launch_testing.actions.ReadyToTest()])


class TestTrackerNode(unittest.TestCase):
    """Active tests: run while the launched node is up."""

    @classmethod
    def setUpClass(cls):
        import rclpy
        from rclpy.context import Context

        from node_graph import GraphClient

        cls.context = Context()
        rclpy.init(context=cls.context)
        cls.client = GraphClient(cls.context, node_ns=NODE, image_topic=IMAGE_TOPIC)

    @classmethod
    def tearDownClass(cls):
        import rclpy

        cls.client.close()
        rclpy.shutdown(context=cls.context)

    def test_1_starts_on_the_shipped_weights(self, proc_output):
        proc_output.assertWaitFor("SparseTT from the default SparseTT-Lite weights", timeout=180)
        proc_output.assertWaitFor("ready: image " + IMAGE_TOPIC, timeout=180)

    def test_2_tracks_an_initial_box_and_resets(self):
        from node_graph import scene

        client = self.client
        client.wait_for(lambda: client.pub["image"].get_subscription_count() > 0
                        and client.pub["init"].get_subscription_count() > 0, "the node's subscriptions", 180)
        image, box = scene(0)
        first = client.handshake(image, 1_000)
        self.assertEqual(first.detections, [])  # IDLE: empty detections with the frame's header
        mark = client.mark()
        client.publish_init(box)
        client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING", start=mark)
        image, truth = scene(1)
        client.publish_image(image, 2_000)
        detections = client.wait_detection(2_000).detections
        self.assertEqual(len(detections), 1)
        centre = detections[0].bbox.center.position
        self.assertLess(abs(centre.x - (truth[0] + truth[2] / 2)) + abs(centre.y - (truth[1] + truth[3] / 2)), 20.0)
        self.assertTrue(client.call_reset().success)
        client.wait_status(lambda s: s.state_name == "IDLE", "IDLE after ~/reset", start=mark)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    """After launch_testing stopped the launch (SIGINT to the node)."""

    def test_exit_code_is_zero(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

    def test_no_traceback(self, proc_output):
        for output in proc_output:
            self.assertNotIn("Traceback", output.text.decode(errors="replace"))

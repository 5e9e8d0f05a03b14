"""bag_from_video: a video file or an image folder -> a rosbag2 MCAP bag of sensor_msgs/Image.

    bag_from_video ../shared/data/sequences/vot_bag/img /tmp/vot_bag_mcap --rate 30 \
        --groundtruth ../shared/data/sequences/vot_bag/groundtruth_rect.txt

Frames are stamped `start + i / rate` (header stamp = bag time). Optional ground truth
(`x,y,w,h` per line) is written as vision_msgs/msg/Detection2D on /groundtruth with the same
stamps. Written with `rosbags` (no ROS installation needed); `ros2 bag play` and
`bag_replay` read it.
"""
from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from sparsett_core.eval.boxes import read_boxes
from sparsett_core.video import open_source


# vision_msgs 4.1.1 definitions (not in rosbags' stores); the bag stores them, readers need nothing.
VISION_MSGS = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose":
        "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n",
    "vision_msgs/msg/Detection2D":
        "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\nvision_msgs/BoundingBox2D bbox\n"
        "string id\n",
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
}


@dataclass(frozen=True)
class BagInfo:
    path: Path
    topic: str
    stamps_ns: tuple[int, ...]
    size: tuple[int, int]  # width, height


def make_typestore():
    """rosbags Jazzy typestore with the vision_msgs types registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for name, text in VISION_MSGS.items():
        types.update(get_types_from_msg(text, name))
    typestore.register(types)
    return typestore


def read_frames(source: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """BGR uint8 frames from a video file or a folder of images (sparsett_core.video's readers)."""
    with open_source(Path(source)) as frames:
        yield from itertools.islice(frames, max_frames)


def write_image_bag(out: str | Path, frames: Iterable[np.ndarray], topic: str = "/camera/image_raw",
                    rate: float = 30.0, frame_id: str = "camera", encoding: str = "bgr8",
                    groundtruth: Sequence[Sequence[float]] | None = None, start_ns: int = 1_700_000_000_000_000_000,
                    ) -> BagInfo:
    """Write frames (BGR uint8) as sensor_msgs/Image into a new MCAP bag folder `out`.

    Args:
        encoding: "bgr8" or "rgb8" (channels swapped on write) or "mono8".
        groundtruth: optional (N, 4) x, y, w, h boxes, one per frame, written on /groundtruth.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if encoding not in ("bgr8", "rgb8", "mono8"):
        raise ValueError(f"encoding {encoding!r} not supported here: use bgr8, rgb8 or mono8")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"bag {out} already exists: remove it or choose another output path")
    typestore = make_typestore()
    types = typestore.types
    Image, Header, Time = types["sensor_msgs/msg/Image"], types["std_msgs/msg/Header"], types["builtin_interfaces/msg/Time"]
    stamps: list[int] = []
    size = (0, 0)
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(topic, Image.__msgtype__, typestore=typestore)
        gt_conn = None
        if groundtruth is not None:
            gt_conn = writer.add_connection("/groundtruth", "vision_msgs/msg/Detection2D", typestore=typestore)
        for i, frame in enumerate(frames):
            t_ns = start_ns + int(round(i * 1e9 / rate))
            header = Header(stamp=Time(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000), frame_id=frame_id)
            if encoding == "rgb8":
                pixels = np.ascontiguousarray(frame[:, :, ::-1])
            elif encoding == "mono8":
                pixels = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            else:
                pixels = np.ascontiguousarray(frame)
            height, width = pixels.shape[:2]
            channels = 1 if pixels.ndim == 2 else pixels.shape[2]
            msg = Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
                        step=width * channels, data=pixels.reshape(-1))
            writer.write(conn, t_ns, typestore.serialize_cdr(msg, Image.__msgtype__))
            if gt_conn is not None and i < len(groundtruth):
                writer.write(gt_conn, t_ns, typestore.serialize_cdr(
                    _gt_detection(types, header, groundtruth[i]), "vision_msgs/msg/Detection2D"))
            stamps.append(t_ns)
            size = (width, height)
    if not stamps:
        raise ValueError("no frames were written (empty video or folder?)")
    return BagInfo(out, topic, tuple(stamps), size)


def _gt_detection(types, header, box):
    x, y, w, h = (float(v) for v in box)
    Pose = types["geometry_msgs/msg/PoseWithCovariance"]
    pose = Pose(pose=types["geometry_msgs/msg/Pose"](
        position=types["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
        orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
        covariance=np.zeros(36, dtype=np.float64))
    hyp = types["vision_msgs/msg/ObjectHypothesisWithPose"](
        hypothesis=types["vision_msgs/msg/ObjectHypothesis"](class_id="groundtruth", score=1.0), pose=pose)
    bbox = types["vision_msgs/msg/BoundingBox2D"](
        center=types["vision_msgs/msg/Pose2D"](position=types["vision_msgs/msg/Point2D"](x=x + w / 2, y=y + h / 2),
                                               theta=0.0), size_x=w, size_y=h)
    return types["vision_msgs/msg/Detection2D"](header=header, results=[hyp], bbox=bbox, id="groundtruth")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bag_from_video", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="video file or folder of images (sorted names)")
    parser.add_argument("out", help="output bag folder (must not exist)")
    parser.add_argument("--topic", default="/camera/image_raw")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second (stamps)")
    parser.add_argument("--frame-id", default="camera")
    parser.add_argument("--encoding", default="bgr8", choices=("bgr8", "rgb8", "mono8"))
    parser.add_argument("--groundtruth", help="x,y,w,h per line; written on /groundtruth")
    parser.add_argument("--max-frames", type=int)
    args = parser.parse_args(argv)
    gt = read_boxes(args.groundtruth) if args.groundtruth else None
    info = write_image_bag(args.out, read_frames(args.source, args.max_frames), args.topic, args.rate,
                           args.frame_id, args.encoding, gt)
    print(f"wrote {len(info.stamps_ns)} frames {info.size[0]}x{info.size[1]} on {info.topic} at {args.rate:g} Hz "
          f"to {info.path}{' (+ /groundtruth)' if gt is not None else ''}")


if __name__ == "__main__":
    main()

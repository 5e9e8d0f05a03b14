"""demo: the main job end to end, video -> bag -> tracker_node -> detections -> overlay MP4 + numbers.

    python -m sparsett_ros.tools.demo                       # renders its own scene
    python -m sparsett_ros.tools.demo --video clip.mp4 --init 120,80,60,40 --checkpoint model.pkl

1. renders a synthetic scene video (or takes --video), 2. writes it into a rosbag2 MCAP bag
(bag_from_video), 3. starts tracker_node with config/tracker.yaml through the real launch file
(`ros2 launch ... tracker.launch.py`) where the ROS 2 launch system is installed, else directly, 4. replays the
bag at its recorded rate (bag_replay) after a stamped initial box on the first frame, 5. records
the node's detections (an MCAP bag and JSON), 6. writes the overlay MP4, and 7. prints
throughput, dropped frames and latency percentiles. Without a checkpoint (--checkpoint or the
params file's `checkpoint`) the node uses the SparseTT-Lite weights shipped with the package;
`--checkpoint random` runs on RANDOM WEIGHTS and says so (the boxes are then meaningless).
`--all-frames` tracks every frame (queue mode, reliable image QoS), so the accuracy numbers do not
depend on the machine's speed; by default the node runs as on a robot (newest frame only).

On machines where DDS must stay on loopback, run it inside ../shared/tools/netns-run.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from sparsett_core.eval.metrics import iou as box_iou
from sparsett_ros.overlay import draw_overlay
from sparsett_ros.tools.bag_from_video import make_typestore, read_frames, write_image_bag

REPO = Path(__file__).resolve().parents[2]
IMAGE_TOPIC = "/demo/camera/image_raw"
NODE = "/tracker_node"


def default_params_file() -> Path | None:
    """config/tracker.yaml of the checkout, else of the installed ROS package."""
    candidate = REPO / "config" / "tracker.yaml"
    if candidate.is_file():
        return candidate
    try:
        from ament_index_python.packages import get_package_share_directory

        candidate = Path(get_package_share_directory("sparsett_ros")) / "config" / "tracker.yaml"
        return candidate if candidate.is_file() else None
    except (ImportError, LookupError):
        return None


def launch_file() -> list[str] | None:
    """How to name the launch file to `ros2 launch`, or None where the launch system cannot start the node.

    The checkout's launch/tracker.launch.py by path (its executable, lib/sparsett_ros/tracker_node, is
    installed into the venv by scripts/setup.sh), else the installed package's.
    """
    if any(importlib.util.find_spec(name) is None for name in ("launch", "launch_ros", "ament_index_python")):
        return None
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        prefix = Path(get_package_prefix("sparsett_ros"))
    except (PackageNotFoundError, LookupError, ValueError):
        return None
    if not (prefix / "lib" / "sparsett_ros" / "tracker_node").is_file():
        return None
    checkout = REPO / "launch" / "tracker.launch.py"
    return [str(checkout)] if checkout.is_file() else ["sparsett_ros", "tracker.launch.py"]


def ros2_executable() -> str:
    here = Path(sys.executable).parent / "ros2"
    return str(here) if here.is_file() else (shutil.which("ros2") or "ros2")


def node_params_file(params_file: Path | None, out: Path, changes: dict[str, Any]) -> Path | None:
    """`params_file` with `changes` applied, written to out/tracker_params.yaml (params_file itself without changes)."""
    if not changes:
        return params_file
    config = yaml.safe_load(params_file.read_text()) if params_file is not None else {}
    config = config or {}
    config.setdefault("/**", {}).setdefault("ros__parameters", {}).update(changes)
    path = out / "tracker_params.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def node_command(params_file: Path | None, checkpoint: str, device: str | None) -> tuple[list[str], str]:
    """The command that starts tracker_node, and how ("ros2 launch" or "python -m")."""
    launch = launch_file()
    if launch is not None:
        cmd = [ros2_executable(), "launch", *launch, f"image:={IMAGE_TOPIC}"]
        if params_file is not None:
            cmd.append(f"params_file:={params_file}")
        cmd += [f"checkpoint:={checkpoint}"] if checkpoint else []
        cmd += [f"device:={device}"] if device else []
        return cmd, "ros2 launch"
    cmd = [sys.executable, "-m", "sparsett_ros.tracker_node", "--ros-args", "-r", f"image:={IMAGE_TOPIC}"]
    cmd += ["--params-file", str(params_file)] if params_file is not None else []
    cmd += ["-p", f"checkpoint:={checkpoint}"] if checkpoint else []
    cmd += ["-p", f"device:={device}"] if device else []
    return cmd, "python -m sparsett_ros.tracker_node (no ROS 2 launch system installed)"


def stop_node(proc: subprocess.Popen) -> None:
    """Ctrl-C to the node's process group (ros2 launch and the node), as in a terminal; kill after 30 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def render_scene(path: Path, frames: int = 90, size: tuple[int, int] = (640, 360), fps: float = 30.0,
                 seed: int = 0) -> np.ndarray:
    """Render a synthetic tracking scene to an MP4: a striped ball crossing a textured background.

    Returns:
        (frames, 4) ground-truth boxes x, y, w, h (pixels).
    """
    width, height = size
    rng = np.random.default_rng(seed)
    noise = sum(cv2.resize(rng.random((height // s + 1, width // s + 1)).astype(np.float32), (width, height),
                           interpolation=cv2.INTER_CUBIC) / (i + 1) for i, s in enumerate((64, 16, 4)))
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    background = np.stack([60 + 90 * noise, 90 + 80 * noise[::-1], 50 + 60 * noise[:, ::-1]], axis=2)
    background = background.clip(0, 255).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MP4 to {path}")
    boxes = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        cx = width * (0.2 + 0.6 * t)
        cy = height * (0.5 + 0.25 * np.sin(2 * np.pi * t))
        r = height * (0.09 + 0.03 * np.sin(3 * np.pi * t))
        frame = background.copy()
        cv2.circle(frame, (int(cx), int(cy)), int(r), (30, 40, 210), -1, cv2.LINE_AA)
        for k in range(-2, 3):  # stripes rotating with the ball
            angle = 4 * t + k * 0.5
            dx, dy = r * np.cos(angle), r * np.sin(angle)
            cv2.line(frame, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), (240, 230, 40), 3, cv2.LINE_AA)
        writer.write(frame)
        boxes.append((cx - r, cy - r, 2 * r, 2 * r))
    writer.release()
    return np.asarray(boxes)


class Recorder:
    """Subscribes to the node's outputs; keeps detections (and their CDR bytes) and statuses."""

    def __init__(self, node: Any) -> None:
        from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
        from vision_msgs.msg import Detection2DArray

        from sparsett_ros.msg import TrackerStatus

        qos = QoSProfile(depth=500, reliability=QoSReliabilityPolicy.RELIABLE)
        self.cond = threading.Condition()
        self.detections: dict[int, tuple[Any, float]] = {}
        self.raw: list[tuple[int, bytes]] = []
        self.status: Any = None
        node.create_subscription(Detection2DArray, f"{NODE}/detections", self._on_det, qos)
        # the node's status is latched (transient local): a late match still delivers the current state
        latched = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE,
                             durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(TrackerStatus, f"{NODE}/status", self._on_status, latched)

    def _on_det(self, msg: Any) -> None:
        from rclpy.serialization import serialize_message

        now = time.monotonic()
        t = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.cond:
            self.detections[t] = (msg, now)
            self.raw.append((t, serialize_message(msg)))
            self.cond.notify_all()

    def _on_status(self, msg: Any) -> None:
        with self.cond:
            self.status = msg
            self.cond.notify_all()

    def wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"demo: timed out after {timeout:.0f} s waiting for {what}")
                self.cond.wait(0.2)


def write_detection_bag(path: Path, raw: list[tuple[int, bytes]]) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    typestore = make_typestore()
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(f"{NODE}/detections", "vision_msgs/msg/Detection2DArray", typestore=typestore)
        for t, data in sorted(raw):
            writer.write(conn, t, data)


def write_overlay(path: Path, frames: list[np.ndarray], stamps: tuple[int, ...], recorder: Recorder,
                  gt: np.ndarray | None, fps: float, note: str) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    box, score, state, source = None, 0.0, "IDLE", -1
    done = 0
    for i, (frame, t) in enumerate(zip(frames, stamps)):
        if t in recorder.detections:
            msg, _ = recorder.detections[t]
            done += 1
            if msg.detections:
                d = msg.detections[0]
                box = (d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                       d.bbox.size_x, d.bbox.size_y)
                score, state, source = d.results[0].hypothesis.score, "TRACKING", i
            else:
                state = "LOST" if box is not None else "IDLE"
        if gt is not None and i < len(gt):
            x, y, w, h = gt[i]
            cv2.rectangle(frame, (int(x), int(y)), (int(x + w), int(y + h)), (255, 255, 255), 1)
        held = "" if source == i or source < 0 else f"held from frame {source}"
        text = "  ".join(v for v in (note, held) if v)
        writer.write(draw_overlay(frame, box, score, state, fps * done / (i + 1), text))
    writer.release()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sparsett_ros.tools.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--video", help="input video (default: render a synthetic scene)")
    parser.add_argument("--init", help="initial box x,y,w,h on the first frame (required with --video)")
    parser.add_argument("--checkpoint", help="SparseTT checkpoint (default: the params file's; empty there = the "
                        "shipped SparseTT-Lite weights); 'random' for random weights")
    parser.add_argument("--params-file", default=None, help="default: config/tracker.yaml")
    parser.add_argument("--device", default=None, help="auto | cuda | cpu (default: the params file's)")
    parser.add_argument("--frames", type=int, default=90, help="frames to render / read")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate of the bag (Hz)")
    parser.add_argument("--out", default="demo_output", help="output folder")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the node")
    parser.add_argument("--all-frames", action="store_true", help="track every frame (queue mode, reliable image "
                        "QoS): accuracy independent of the machine's speed; latency then includes queueing")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gt = None
    if args.video:
        if not args.init:
            parser.error("--init x,y,w,h is required with --video")
        video = Path(args.video)
    else:
        video = out / "scene.mp4"
        gt = render_scene(video, args.frames, fps=args.rate)
        print(f"rendered synthetic scene: {video} ({args.frames} frames)")
    init_box = tuple(float(v) for v in args.init.split(",")) if args.init else tuple(gt[0])
    frames = list(read_frames(video, args.frames))
    bag = out / "input_bag"
    for old in (bag, out / "detections_bag"):  # a rerun into the same folder replaces the last run's bags
        if old.exists():
            shutil.rmtree(old)
    info = write_image_bag(bag, frames, IMAGE_TOPIC, args.rate, "camera", groundtruth=gt)
    print(f"bag: {bag} ({len(info.stamps_ns)} frames {info.size[0]}x{info.size[1]} at {args.rate:g} Hz, MCAP)")

    params_file = Path(args.params_file) if args.params_file else default_params_file()
    configured = ""
    if params_file is not None:
        values = (yaml.safe_load(params_file.read_text()) or {}).get("/**", {}).get("ros__parameters", {})
        configured = values.get("checkpoint", "")
    checkpoint = args.checkpoint or configured
    note = ""
    changes: dict[str, Any] = {}
    if checkpoint == "random":
        changes["allow_random_weights"] = True
        note = "RANDOM WEIGHTS"
        print("RANDOM WEIGHTS (--checkpoint random): the pipeline, timing and overlay are real, the boxes are "
              "meaningless. Leave --checkpoint out for the shipped SparseTT-Lite weights, or pass the GOT-10k or "
              "full-data SparseTT model.")
    elif not checkpoint:
        print("model: the SparseTT-Lite weights shipped with the package (pass --checkpoint for another model)")
    if args.all_frames:
        depth = min(1000, max(100, len(frames)))  # the parameters' ranges
        changes.update(process_all_frames=True, queue_size=depth, image_qos="reliable", image_qos_depth=depth)
    cmd, how = node_command(node_params_file(params_file, out, changes), checkpoint, args.device)
    log_path = out / "tracker_node.log"
    log = open(log_path, "w")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    print(f"started tracker_node with {how} (log {log_path}); loading the model ...")

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Header

    from sparsett_ros.tools.bag_replay import replay, resend_first
    from sparsett_ros.tools.select_target import make_init_msg

    rclpy.init()
    node = rclpy.create_node("sparsett_demo")
    recorder = Recorder(node)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    published: dict[int, float] = {}
    code = 0
    try:
        from rclpy.qos import QoSProfile, QoSReliabilityPolicy
        from vision_msgs.msg import Detection2D

        init_pub = node.create_publisher(Detection2D, f"{NODE}/init",
                                          QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE))
        deadline = time.monotonic() + args.timeout
        while init_pub.get_subscription_count() == 0:
            if proc.poll() is not None:
                raise RuntimeError(f"tracker_node exited with {proc.returncode}: see {log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"tracker_node not ready after {args.timeout:.0f} s: see {log_path}")
            time.sleep(0.1)

        def record(_topic: str, t: int, wall: float) -> None:
            published[t] = wall

        publishers: dict = {}  # one image publisher for both parts of the replay
        t0 = info.stamps_ns[0]

        def first_answered(wait_s: float) -> bool:
            with recorder.cond:
                return recorder.cond.wait_for(lambda: t0 in recorder.detections, wait_s)

        resend_first(node, bag, first_answered, max(deadline - time.monotonic(), 0.0), topics=[IMAGE_TOPIC],
                     publishers=publishers, on_publish=record)
        header = Header(stamp=recorder.detections[t0][0].header.stamp, frame_id="camera")
        init_pub.publish(make_init_msg(init_box, header))
        recorder.wait(lambda: recorder.status is not None and recorder.status.state_name == "TRACKING",
                      args.timeout, "TRACKING")
        before = recorder.status.frames_received  # the first frame, once or more if it was resent
        start = time.monotonic()
        replay(node, bag, rate=1.0, topics=[IMAGE_TOPIC], skip=1, on_publish=record, publishers=publishers)
        total = before + len(info.stamps_ns) - 1
        recorder.wait(lambda: recorder.status.frames_received >= total
                      and recorder.status.frames_processed + recorder.status.frames_dropped
                      + recorder.status.inputs_rejected >= recorder.status.frames_received,
                      args.timeout, "the last frame")
        wall = time.monotonic() - start
    except (KeyboardInterrupt, TimeoutError, RuntimeError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        code = 1
    finally:
        executor.shutdown()
        spinner.join(timeout=5)
        node.destroy_node()
        rclpy.try_shutdown()
        stop_node(proc)
        log.close()
    if code:
        raise SystemExit(code)

    status = recorder.status
    processed = [t for t in info.stamps_ns[1:] if t in recorder.detections]
    latency = np.array([(recorder.detections[t][1] - published[t]) * 1000.0 for t in processed])
    write_detection_bag(out / "detections_bag", recorder.raw)
    overlay_path = out / "overlay.mp4"
    write_overlay(overlay_path, [f.copy() for f in frames], info.stamps_ns, recorder, gt, args.rate, note)
    boxes = {}
    for t, (msg, _) in recorder.detections.items():
        if msg.detections:
            d = msg.detections[0]
            boxes[t] = [d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                        d.bbox.size_x, d.bbox.size_y, d.results[0].hypothesis.score]
    summary = {
        "frames": len(info.stamps_ns), "camera_hz": args.rate, "processed": int(status.frames_processed),
        "dropped": int(status.frames_dropped), "rejected": int(status.inputs_rejected),
        "throughput_fps": round((len(processed)) / wall, 2) if wall > 0 else 0.0,
        "latency_ms": {f"p{q}": round(float(np.percentile(latency, q)), 1) for q in (50, 90, 99)} if len(latency)
        else {}, "random_weights": bool(status.random_weights), "checkpoint": checkpoint or "default",
        "all_frames": bool(args.all_frames), "started_with": how,
    }
    if gt is not None and boxes:
        hit = [i for i, t in enumerate(info.stamps_ns) if t in boxes]
        ious = box_iou(np.array([boxes[info.stamps_ns[i]][:4] for i in hit]), gt[hit])
        summary["mean_iou_processed_frames"] = round(float(np.mean(ious)), 3)
    (out / "detections.json").write_text(json.dumps({"summary": summary, "boxes_xywh_score": {
        str(t): b for t, b in sorted(boxes.items())}}, indent=1))
    print(f"overlay video: {overlay_path}")
    print(f"detections: {out / 'detections_bag'} (MCAP), {out / 'detections.json'}")
    print(f"frames {summary['frames']} at {args.rate:g} Hz: processed {summary['processed']}, "
          f"dropped {summary['dropped']} ({'every frame queued' if args.all_frames else 'newest-frame policy'}), "
          f"rejected {summary['rejected']}")
    print(f"throughput {summary['throughput_fps']} frames/s; end-to-end latency (image published -> detections "
          f"received) p50 {summary['latency_ms'].get('p50')} ms, p90 {summary['latency_ms'].get('p90')} ms, "
          f"p99 {summary['latency_ms'].get('p99')} ms")
    if "mean_iou_processed_frames" in summary:
        print(f"mean IoU vs the scene's ground truth on processed frames: {summary['mean_iou_processed_frames']}"
              + (" (random weights: meaningless)" if note else ""))
    if note:
        print("REMINDER: this run used RANDOM WEIGHTS (--checkpoint random).")


if __name__ == "__main__":
    main()

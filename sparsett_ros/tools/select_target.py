"""select_target: pick the target in the live image with the mouse and send it to tracker_node.

    select_target --image /camera/image_raw --node /tracker_node

Shows the newest image in an OpenCV window. Press SPACE (or s) to freeze the frame and drag a
box, ENTER to send it: it is published on <node>/init as a vision_msgs/Detection2D stamped with
the frozen frame's stamp, so the node initialises on that very frame and catches up. Press r
to stop tracking (a 0x0 box), q or ESC to quit. Needs an OpenCV build with GUI support
(opencv-python, not -headless).
"""
from __future__ import annotations

import argparse
import threading
from typing import Any

import numpy as np


def make_init_msg(box: tuple[float, float, float, float], header: Any) -> Any:
    """Detection2D for ~/init: centre + size from an (x, y, w, h) box; header of the frame it was drawn on."""
    from vision_msgs.msg import Detection2D

    x, y, w, h = (float(v) for v in box)
    msg = Detection2D(header=header)
    msg.bbox.center.position.x, msg.bbox.center.position.y = x + w / 2.0, y + h / 2.0
    msg.bbox.size_x, msg.bbox.size_y = w, h
    return msg


def gui_available() -> tuple[bool, str]:
    """Whether this OpenCV can open windows (headless builds cannot)."""
    import cv2

    info = cv2.getBuildInformation()
    gui_line = next((line for line in info.splitlines() if line.strip().startswith("GUI:")), "GUI: NONE")
    if "NONE" in gui_line.upper():
        return False, ("this OpenCV build has no GUI (opencv-python-headless): install opencv-python, or give the "
                       "box with rqt_image_view clicks or by publishing a Detection2D on ~/init")
    return True, ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="select_target", description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="/camera/image_raw", help="image topic (sensor_msgs/Image)")
    parser.add_argument("--node", default="/tracker_node", help="tracker_node's full name")
    args = parser.parse_args(argv)
    ok, why = gui_available()
    if not ok:
        raise SystemExit(f"select_target: {why}")

    import cv2
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection2D

    from sparsett_ros.image_conversion import ImageConversionError, image_to_bgr

    rclpy.init()
    node = rclpy.create_node("select_target")
    latest: dict[str, Any] = {}
    lock = threading.Lock()

    def on_image(msg: Image) -> None:
        try:
            image = image_to_bgr(msg)
        except ImageConversionError as exc:
            node.get_logger().warning(f"cannot show image: {exc}", throttle_duration_sec=5.0)
            return
        with lock:
            latest["image"], latest["header"] = np.array(image), msg.header

    node.create_subscription(Image, args.image, on_image, qos_profile_sensor_data)
    publisher = node.create_publisher(Detection2D, f"{args.node.rstrip('/')}/init",
                                      QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    window = "select_target (SPACE: select, r: stop, q: quit)"
    try:
        while True:
            with lock:
                image, header = latest.get("image"), latest.get("header")
            if image is not None:
                cv2.imshow(window, image)
            key = cv2.waitKey(30) & 0xFF
            if key in (ord("q"), 27):
                break
            if key == ord("r"):
                publisher.publish(make_init_msg((0.0, 0.0, 0.0, 0.0), Header()))
                node.get_logger().info("sent stop (0x0 box)")
            if key in (ord(" "), ord("s")) and image is not None:
                x, y, w, h = cv2.selectROI(window, image, showCrosshair=True, fromCenter=False)
                if w > 0 and h > 0:
                    publisher.publish(make_init_msg((x, y, w, h), header))
                    node.get_logger().info(f"sent box ({x}, {y}, {w}, {h}) on the frame stamped "
                                           f"{header.stamp.sec}.{header.stamp.nanosec:09d}")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        cv2.destroyAllWindows()
        executor.shutdown()
        spinner.join(timeout=5)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()

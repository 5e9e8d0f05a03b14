"""bag_replay: publish a rosbag2 bag's messages with their recorded timing (no `ros2 bag` needed).

    bag_replay /tmp/vot_bag_mcap --rate 1.0 --remap /camera/image_raw:=/tracker/image

Reads sqlite3 or MCAP bags with `rosbags` and publishes the stored CDR bytes unchanged, so any
message type whose Python package is installed can be replayed. Waits (up to --wait seconds)
for a subscriber on the first topic before starting, so the first frames are not lost.
"""
from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from rclpy.qos import QoSProfile, QoSReliabilityPolicy


def message_class(msgtype: str) -> Any:
    """'sensor_msgs/msg/Image' -> the rclpy class."""
    package, _, name = msgtype.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"message type {msgtype} is not installed ({exc}): install its interface package") from exc


def read_messages(bag: str | Path, topics: Iterable[str] | None = None) -> tuple[list, list]:
    """(connections, [(connection, bag_time_ns, raw_cdr_bytes)]) in time order."""
    from rosbags.highlevel import AnyReader

    bag = Path(bag)
    if not bag.exists():
        raise FileNotFoundError(f"bag {bag} does not exist")
    with AnyReader([bag]) as reader:
        wanted = set(topics) if topics else None
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not connections:
            raise ValueError(f"bag {bag} has none of the topics {sorted(wanted or [])}; it has "
                             f"{sorted({c.topic for c in reader.connections})}")
        return connections, [(c, t, bytes(raw)) for c, t, raw in reader.messages(connections=connections)]


def replay(node: Any, bag: str | Path, rate: float = 1.0, topics: Iterable[str] | None = None,
           remap: dict[str, str] | None = None, qos: QoSProfile | None = None, wait_s: float = 10.0,
           on_publish: Callable[[str, int, float], None] | None = None, stop: Callable[[], bool] | None = None,
           skip: int = 0, limit: int | None = None, publishers: dict[str, Any] | None = None) -> int:
    """Publish the bag's messages from `node` with their recorded timing.

    Args:
        rate: playback speed factor (2.0 = twice as fast); 0 publishes as fast as possible.
        remap: bag topic -> published topic.
        qos: publisher QoS (default reliable, depth 10).
        wait_s: wait up to this long for a subscriber on every published topic before starting.
        on_publish: called after each message with (published topic, bag time ns, wall time s).
        stop: polled between messages; True stops the replay.
        skip, limit: publish only messages [skip, skip + limit) of the selected topics.
        publishers: bag topic -> publisher, reused and filled across calls. A fresh publisher's
            first messages can be lost while a best-effort subscriber is still matching it, so a
            caller that replays in parts passes one dict to all of them.

    Returns:
        Number of messages published.
    """
    remap = remap or {}
    qos = qos or QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
    connections, messages = read_messages(bag, topics)
    messages = messages[skip:None if limit is None else skip + limit]
    publishers = {} if publishers is None else publishers
    for conn in connections:
        if conn.topic not in publishers:
            publishers[conn.topic] = node.create_publisher(message_class(conn.msgtype), remap.get(conn.topic, conn.topic),
                                                           qos)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(p.get_subscription_count() == 0 for p in publishers.values()):
        time.sleep(0.05)
    if not messages:
        return 0
    t0, wall0 = messages[0][1], time.monotonic()
    count = 0
    for conn, t_ns, raw in messages:
        if stop is not None and stop():
            break
        if rate > 0:
            delay = wall0 + (t_ns - t0) / 1e9 / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        publisher = publishers[conn.topic]
        publisher.publish(raw)
        count += 1
        if on_publish is not None:
            on_publish(publisher.topic_name, t_ns, time.monotonic())
    return count


def resend_first(node: Any, bag: str | Path, received: Callable[[float], bool], timeout: float,
                 topics: Iterable[str] | None = None, publishers: dict[str, Any] | None = None,
                 on_publish: Callable[[str, int, float], None] | None = None, every_s: float = 2.0) -> int:
    """Publish the bag's first (selected) message, again every `every_s`, until it is received.

    A just-matched publisher's first message to a best-effort subscription can be lost; a caller
    that needs that one message (the demo's first frame, before its initial box) resends it.

    Args:
        received: waits up to the given seconds for the receiver's answer; True once it came.
        timeout: give up after this many seconds (TimeoutError).
        publishers: as in `replay`; pass the same dict to the replay of the rest.

    Returns:
        How many times the message was sent.
    """
    deadline = time.monotonic() + timeout
    sends = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no answer to the first message of {bag} within {timeout:.0f} s")
        replay(node, bag, rate=0, topics=topics, limit=1, on_publish=on_publish, wait_s=remaining,
               publishers=publishers)
        sends += 1
        if received(max(min(every_s, deadline - time.monotonic()), 0.0)):
            return sends


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bag_replay", description=__doc__.split("\n")[0])
    parser.add_argument("bag", help="bag folder (sqlite3 or MCAP)")
    parser.add_argument("--rate", type=float, default=1.0, help="speed factor; 0 = as fast as possible")
    parser.add_argument("--topics", nargs="*", help="only these topics")
    parser.add_argument("--remap", nargs="*", default=[], metavar="FROM:=TO")
    parser.add_argument("--best-effort", action="store_true", help="publish best effort (default reliable)")
    parser.add_argument("--skip", type=int, default=0, help="skip the first N messages")
    parser.add_argument("--limit", type=int, help="publish at most N messages")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for subscribers")
    args = parser.parse_args(argv)
    remap = dict(item.split(":=", 1) for item in args.remap)

    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init()
    node = rclpy.create_node("bag_replay")
    qos = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.BEST_EFFORT if args.best_effort
                     else QoSReliabilityPolicy.RELIABLE)
    try:
        count = replay(node, args.bag, args.rate, args.topics, remap, qos, args.wait, skip=args.skip, limit=args.limit)
        print(f"published {count} messages from {args.bag}")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()

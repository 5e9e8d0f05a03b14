"""Frames between the image callback and the inference worker.

* `FrameBuffer`: the last N frames by stamp, so that an initial box drawn on a past frame
  (stamped ~/init) can be applied to that very frame.
* `FrameSlot`: the hand-over to the worker. With capacity 1 (the default) it holds only the
  newest frame: a frame that arrives before the worker took the previous one replaces it and
  is counted as dropped, so latency stays bounded when the model is slower than the camera.
  With capacity N (process_all_frames) it is a FIFO that drops (and counts) the oldest frame
  when full. `put` never blocks; `take` waits on a condition variable with a timeout.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One received image.

    Attributes:
        image: (H, W, 3) uint8 BGR.
        stamp_ns: header stamp in nanoseconds.
        header: the image's std_msgs/Header (copied to every output computed from it).
        received_s: monotonic time the node received it (for latency).
        seq: receive counter, 0-based.
    """

    image: np.ndarray
    stamp_ns: int
    header: Any = field(compare=False)
    received_s: float = 0.0
    seq: int = 0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


class FrameBuffer:
    """The last `maxlen` frames, looked up by stamp. Thread-safe."""

    def __init__(self, maxlen: int) -> None:
        self._frames: collections.deque[Frame] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def add(self, frame: Frame) -> None:
        with self._lock:
            self._frames.append(frame)

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()

    def newest(self) -> Frame | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def get(self, stamp_ns: int) -> Frame | None:
        """The newest frame with exactly this stamp, or None."""
        with self._lock:
            for frame in reversed(self._frames):
                if frame.stamp_ns == stamp_ns:
                    return frame
        return None

    def after(self, frame: Frame, until_seq: int) -> list[Frame]:
        """Frames received after `frame` up to receive counter `until_seq` (inclusive), oldest first."""
        with self._lock:
            return [f for f in self._frames if frame.seq < f.seq <= until_seq]

    def stamp_range(self) -> tuple[int, int] | None:
        """(oldest, newest) stamps held, or None when empty."""
        with self._lock:
            return (self._frames[0].stamp_ns, self._frames[-1].stamp_ns) if self._frames else None


class FrameSlot:
    """Newest-frame slot (capacity 1) or bounded FIFO; never blocks the producer. Thread-safe."""

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"FrameSlot capacity must be >= 1, got {capacity}")
        self._frames: collections.deque[Frame] = collections.deque()
        self._capacity = capacity
        self._cond = threading.Condition()
        self._closed = False
        self._newest_seq = -1
        self.dropped = 0
        self.behind = 0  # frames put after the one `take` returned last, when it returned it

    def put(self, frame: Frame) -> int:
        """Offer a frame; returns how many frames were dropped to make room (0 or 1)."""
        with self._cond:
            dropped = 0
            while len(self._frames) >= self._capacity:
                self._frames.popleft()
                dropped += 1
            self._frames.append(frame)
            self._newest_seq = max(self._newest_seq, frame.seq)
            self.dropped += dropped
            self._cond.notify()
            return dropped

    def take(self, timeout: float | None = None) -> Frame | None:
        """The oldest waiting frame (the newest with capacity 1); None on timeout or close.

        Sets `behind`: how many frames (by `seq`) had been put after the returned one by then
        (0 in newest-frame mode; the backlog of a FIFO).
        """
        with self._cond:
            if not self._frames and not self._closed:
                self._cond.wait(timeout)
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self.behind = max(0, self._newest_seq - frame.seq)
            return frame

    def wake(self) -> None:
        """Wake a waiting `take` (e.g. a command arrived)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._frames)

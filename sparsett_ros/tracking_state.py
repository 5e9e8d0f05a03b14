"""IDLE / TRACKING / LOST: when the node still has its target.

`TrackingStateMachine.update(score)` is called once per tracked frame. A score below
`lost_score` on `lost_frames` consecutive frames makes the state LOST; in LOST the tracker keeps
searching and a score above `recover_score` makes it TRACKING again. `start()` begins a track
(TRACKING), `stop()` ends it (IDLE). Thresholds can be replaced at any time (run-time parameters).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class TrackState(enum.IntEnum):
    """Values match sparsett_ros/msg/TrackerStatus constants."""

    IDLE = 0
    TRACKING = 1
    LOST = 2


@dataclass(frozen=True)
class LossThresholds:
    lost_score: float = 0.25
    lost_frames: int = 5
    recover_score: float = 0.4

    def __post_init__(self) -> None:
        if self.lost_frames < 1:
            raise ValueError(f"lost_frames must be >= 1, got {self.lost_frames}")
        if self.recover_score < self.lost_score:
            raise ValueError(f"recover_score ({self.recover_score}) must be >= lost_score ({self.lost_score})")


class TrackingStateMachine:
    """Debounced target-loss logic over a stream of scores."""

    def __init__(self, thresholds: LossThresholds = LossThresholds()) -> None:
        self.thresholds = thresholds
        self.state = TrackState.IDLE
        self.weak_frames = 0  # consecutive frames below lost_score

    def start(self) -> TrackState:
        self.state, self.weak_frames = TrackState.TRACKING, 0
        return self.state

    def stop(self) -> TrackState:
        self.state, self.weak_frames = TrackState.IDLE, 0
        return self.state

    def update(self, score: float) -> TrackState:
        """Feed the score of one tracked frame; returns the new state (IDLE stays IDLE)."""
        t = self.thresholds
        if self.state == TrackState.IDLE:
            return self.state
        if self.state == TrackState.TRACKING:
            weak = not score >= t.lost_score  # NaN counts as weak
            self.weak_frames = self.weak_frames + 1 if weak else 0
            if self.weak_frames >= t.lost_frames:
                self.state = TrackState.LOST
        elif score > t.recover_score:  # LOST
            self.state, self.weak_frames = TrackState.TRACKING, 0
        return self.state

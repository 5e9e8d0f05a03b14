#!/usr/bin/env bash
# scripts/demo.sh [DEMO ARGS]: set up (idempotent), then the end-to-end demo: a video becomes a
# rosbag, the bag is replayed through tracker_node (started with `ros2 launch` and the package's
# launch file where the launch system is installed), detections are recorded, the overlay is
# written as MP4 and throughput/latency are printed. `scripts/demo.sh --help` lists the options
# (--video PATH, --init x,y,w,h, --checkpoint CKPT, --out DIR, --all-frames, ...).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
. "$ROOT/scripts/env.sh"
cd "$ROOT"
if [ -x "$NETNS_RUN" ]; then
  exec "$NETNS_RUN" "$VENV/bin/python" -m sparsett_ros.tools.demo "$@"
fi
exec "$VENV/bin/python" -m sparsett_ros.tools.demo "$@"

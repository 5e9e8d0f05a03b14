#!/usr/bin/env bash
# scripts/test.sh [PYTEST ARGS]: set up (idempotent), then run the test suite.
# ROS tests create DDS participants, so pytest runs inside ../shared/tools/netns-run (a private
# network namespace with only loopback) wherever that tool exists; Fast DDS shared-memory
# segments left behind by the run are removed afterwards.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
. "$ROOT/scripts/env.sh"
cd "$ROOT"

marker="$(mktemp)"
cleanup_shm() {
  local f
  for f in /dev/shm/fastrtps_* /dev/shm/fastdds_* /dev/shm/sem.fastrtps_* /dev/shm/sem.fastdds_*; do
    [ -e "$f" ] && [ "$f" -nt "$marker" ] || continue
    grep -qsF "$f" /proc/[0-9]*/maps || rm -f "$f"   # never one a live process still maps
  done
  rm -f "$marker"
}
trap cleanup_shm EXIT

if [ -x "$NETNS_RUN" ]; then
  "$NETNS_RUN" "$VENV/bin/python" -m pytest "$@"
elif [ "${CI:-}" = true ]; then
  echo "error: $NETNS_RUN not found; CI needs ../shared beside the checkout" >&2
  exit 2
else
  echo "note: $NETNS_RUN not found (a user's clone): ROS tests use this host's network" >&2
  "$VENV/bin/python" -m pytest "$@"
fi

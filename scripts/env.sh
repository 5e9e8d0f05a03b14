# Sourced by the README commands after scripts/setup.sh: the environment the tools run in.
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
VENV="${SPARSETT_VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# Our generated message libraries live in the venv (a sourced system ROS does not know them).
export LD_LIBRARY_PATH="$VENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONUNBUFFERED=1
# These machines: every ROS process runs in a private network namespace (loopback only).
NETNS_RUN="$ROOT/../shared/tools/netns-run"
for _shared in "${SPARSETT_SHARED:-}" "$ROOT/shared"; do  # where test/conftest.py looks first
  if [ -n "$_shared" ] && [ -x "$_shared/tools/netns-run" ]; then NETNS_RUN="$_shared/tools/netns-run"; break; fi
done
unset _shared

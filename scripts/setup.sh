#!/usr/bin/env bash
# Idempotent set-up for streamingt2v on a fresh Debian machine (no internet but the registries).
#   scripts/setup.sh            system packages + runtime venv (onnxruntime) + release build
#   scripts/setup.sh --dev      also the export/test Python stack (torch, diffusers, ...)
#   scripts/setup.sh --no-build skip the release build (the test command builds in debug)
# Re-running is quick: every step checks whether its work is already done.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEV=0
BUILD=1
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --no-build) BUILD=0 ;;
    *) echo "setup.sh: unknown argument '$arg' (expected --dev or --no-build)" >&2; exit 2 ;;
  esac
done

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

# 1. Debian packages: FFmpeg headers for video-rs, clang for bindgen, ffprobe for tests.
APT_PKGS=(libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavdevice-dev
          libavfilter-dev libswresample-dev clang libclang-dev pkg-config ffmpeg)
# The test suite drives a headless browser against `st2v serve` (tests/server_browser.rs) and
# starts Redis on a loopback port for the replicas' shared queue (tests/cluster_queue.rs).
[ "$DEV" = 1 ] && APT_PKGS+=(chromium redis-server)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Python virtual environment with the pinned ONNX Runtime (the engine dlopens its library).
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
# The dev stack (torch with its CUDA wheels) needs about 8 GiB in the venv while installing.
warn_if_low_disk() {  # warn_if_low_disk NAME
  local need_gib=1; [ "$1" = dev ] && need_gib=8
  local free_gib=$(( $(df -Pk "$ROOT" | awk 'NR==2 {print $4}') / 1048576 ))
  if [ "$free_gib" -lt "$need_gib" ]; then
    log "warning: $free_gib GiB free on $(df -P "$ROOT" | awk 'NR==2 {print $6}'); the $1 requirements need about $need_gib GiB"
  fi
}
req_stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }
install_reqs() {  # install_reqs NAME FILE...
  local name=$1; shift
  local stamp="$VENV/.st2v-$name-$(req_stamp "$@")"
  if [ ! -f "$stamp" ]; then
    log "installing Python requirements ($name)"
    warn_if_low_disk "$name"
    # No wheel cache: the dev stack (CUDA torch) is several GB and would be stored twice.
    "$VENV/bin/pip" install -q --no-cache-dir --disable-pip-version-check "${@/#/-r}"
    rm -f "$VENV"/.st2v-"$name"-*
    touch "$stamp"
  fi
}
install_reqs runtime requirements-runtime.txt
[ "$DEV" = 1 ] && install_reqs dev requirements-runtime.txt export/requirements.txt

# 3. Project-local runtime directory: a stable path to the ONNX Runtime library.
ORT_LIB=$("$VENV/bin/python" - <<'PY'
import glob, os, onnxruntime
libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))
print(libs[-1] if libs else "")
PY
)
[ -n "$ORT_LIB" ] || { echo "setup.sh: no libonnxruntime.so* inside the onnxruntime wheel" >&2; exit 1; }
mkdir -p "$ROOT/runtime"
ln -sf "$ORT_LIB" "$ROOT/runtime/libonnxruntime.so"

# 4. Build the engine.
if [ "$BUILD" = 1 ]; then
  log "building st2v (release)"
  cargo build --release --quiet
fi

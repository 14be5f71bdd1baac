#!/usr/bin/env bash
# Fetches NVRTC (no GPU, no CUDA toolkit needed) so the kernel compile test can run here and in CI.
#
#   export LD_LIBRARY_PATH=$(tools/setup_nvrtc.sh):$LD_LIBRARY_PATH
#   REQUIRE_NVRTC=1 cargo test --release --test kernels_compile -- --nocapture
#
# It downloads the pinned PyPI wheel nvidia-cuda-nvrtc (13.0.x: the H200 machine's driver is
# CUDA 13.0, and a newer NVRTC would write PTX its JIT refuses), unpacks it with Python's zipfile
# module (no venv, no pip install) and prints the folder holding libnvrtc.so.13 on stdout; all
# progress messages go to stderr. Idempotent: a second run only prints the folder.
# CACHE (default $HOME/.cache/rlnet-nvrtc) chooses where the wheel and its contents live.
set -euo pipefail

VERSION="13.0.88"
CACHE="${CACHE:-$HOME/.cache/rlnet-nvrtc}"
WHL_DIR="$CACHE/whl"
OUT_DIR="$CACHE/nvrtc-$VERSION"
LIB_DIR="$OUT_DIR/nvidia/cu13/lib"

fail() {
    echo "setup_nvrtc.sh: $*" >&2
    exit 1
}

if [ -e "$LIB_DIR/libnvrtc.so.13" ]; then
    echo "$LIB_DIR"
    exit 0
fi

PY="$(command -v python3 || true)"
[ -n "$PY" ] || fail "python3 is needed (for pip download and zipfile)"

mkdir -p "$WHL_DIR"
if ! ls "$WHL_DIR"/nvidia_cuda_nvrtc-"$VERSION"-*.whl >/dev/null 2>&1; then
    echo "setup_nvrtc.sh: downloading nvidia-cuda-nvrtc==$VERSION (about 90 MB) into $WHL_DIR" >&2
    "$PY" -m pip download --quiet --no-deps "nvidia-cuda-nvrtc==$VERSION" -d "$WHL_DIR" >&2 ||
        fail "pip download of nvidia-cuda-nvrtc==$VERSION failed (network? pip missing?)"
fi
WHL="$(ls "$WHL_DIR"/nvidia_cuda_nvrtc-"$VERSION"-*.whl 2>/dev/null | head -n 1)"
[ -n "$WHL" ] || fail "no nvidia_cuda_nvrtc-$VERSION wheel in $WHL_DIR after download"

echo "setup_nvrtc.sh: unpacking $(basename "$WHL")" >&2
rm -rf "$OUT_DIR.tmp"
"$PY" -m zipfile -e "$WHL" "$OUT_DIR.tmp" || fail "could not unpack $WHL"
[ -e "$OUT_DIR.tmp/nvidia/cu13/lib/libnvrtc.so.13" ] ||
    fail "the wheel has no nvidia/cu13/lib/libnvrtc.so.13 (layout changed?)"
rm -rf "$OUT_DIR"
mv "$OUT_DIR.tmp" "$OUT_DIR"

echo "$LIB_DIR"

#!/usr/bin/env bash
# Fetches onnxruntime and numpy for the ONNX export test (tests/export.rs), without a venv or
# pip install: the pinned PyPI wheels are downloaded and unpacked with Python's zipfile module,
# and the folder holding both packages is printed on stdout (put it on PYTHONPATH):
#
#   export PYTHONPATH=$(tools/setup_onnxruntime.sh)
#   REQUIRE_ONNXRUNTIME=1 cargo test --release --test export
#
# Progress goes to stderr. Idempotent: a second run only prints the folder. CACHE (default
# $HOME/.cache/rlnet-onnxruntime) chooses where the wheels and their contents live.
set -euo pipefail

ORT="1.20.1"
NUMPY="2.1.3"
CACHE="${CACHE:-$HOME/.cache/rlnet-onnxruntime}"
OUT_DIR="$CACHE/site-$ORT-$NUMPY"

fail() {
    echo "setup_onnxruntime.sh: $*" >&2
    exit 1
}

if [ -e "$OUT_DIR/onnxruntime/__init__.py" ] && [ -e "$OUT_DIR/numpy/__init__.py" ]; then
    echo "$OUT_DIR"
    exit 0
fi
PY="$(command -v python3 || true)"
[ -n "$PY" ] || fail "python3 is needed (for pip download and zipfile)"
mkdir -p "$CACHE/whl"
echo "setup_onnxruntime.sh: downloading onnxruntime==$ORT and numpy==$NUMPY into $CACHE/whl" >&2
"$PY" -m pip download --quiet --no-deps "onnxruntime==$ORT" "numpy==$NUMPY" -d "$CACHE/whl" >&2 ||
    fail "pip download of onnxruntime==$ORT numpy==$NUMPY failed (network? pip missing? a Python without wheels for them?)"
rm -rf "$OUT_DIR.tmp"
for pkg in onnxruntime-"$ORT" numpy-"$NUMPY"; do
    whl="$(ls "$CACHE/whl/$pkg"-*.whl 2>/dev/null | head -n 1)"
    [ -n "$whl" ] || fail "no $pkg wheel in $CACHE/whl after download"
    "$PY" -m zipfile -e "$whl" "$OUT_DIR.tmp" || fail "could not unpack $whl"
done
rm -rf "$OUT_DIR"
mv "$OUT_DIR.tmp" "$OUT_DIR"
echo "$OUT_DIR"

#!/usr/bin/env bash
# Installs PyTorch and numpy at the versions of tools/requirements.txt into a venv of their
# own, for the PyTorch interchange test (tests/pytorch.rs), and prints that venv's python on
# stdout:
#
#   export RLNET_TORCH_PYTHON=$(tools/setup_torch.sh)
#   REQUIRE_TORCH=1 cargo test --release --test pytorch
#
# The PyPI build of torch carries CUDA libraries (about 5 GB installed, a minute or two to
# fetch) and runs on CPU-only machines. Progress goes to stderr. Idempotent: a second run only
# prints the path. CACHE (default $HOME/.cache/rlnet-torch) chooses where the venv lives.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
req="$here/requirements.txt"
CACHE="${CACHE:-$HOME/.cache/rlnet-torch}"
# The venv is named after the pinned versions, so a change of pins makes a new one.
pins="$(grep -E '^[a-z]' "$req" | sed 's/==/-/' | paste -sd- -)"
VENV="$CACHE/venv-$pins"

fail() {
    echo "setup_torch.sh: $*" >&2
    exit 1
}

# Written last: a venv without it is a broken install, made again.
done_mark="$VENV/.installed"
if [ -e "$done_mark" ] && "$VENV/bin/python" -c "import torch, numpy" 2>/dev/null; then
    echo "$VENV/bin/python"
    exit 0
fi
PY="$(command -v python3 || true)"
[ -n "$PY" ] || fail "python3 is needed (3.11: the pinned wheels are built for it)"
rm -rf "$VENV"
mkdir -p "$CACHE"
echo "setup_torch.sh: installing $(grep -E '^[a-z]' "$req" | paste -sd' ' -) into $VENV" >&2
"$PY" -m venv "$VENV" || fail "could not create a venv with $PY (is the venv module installed?)"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2 ||
    fail "pip install -r $req failed (network? a Python without wheels for these pins?)"
"$VENV/bin/python" -c "import torch, numpy" || fail "$VENV: torch does not import after installing"
touch "$done_mark"
echo "$VENV/bin/python"

#!/usr/bin/env bash
# RLNet against the SENet and SNL baselines at the same exact ReLU budget, one command:
#   tools/compare_methods.sh [--budget 6k] [--epochs 8] [--out runs/compare] [--shared ../shared]
#                            [--device auto|cpu|cuda]
# Each method is a `rlnet pipeline` run folder (resumable: rerun the same command after an
# interruption); SENet and SNL share one clean teacher (SNL's folder gets a copy of SENet's,
# which the pipeline reuses). Data: real CIFAR-10 images from <shared>/data/cifar10-mini, NPA
# over the 15 standard corruptions (frost textures from <shared>/data/frost), PGD-10 AdvA.
# Ends with `rlnet report` over the three folders: <out>/comparison.md and comparison.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=6k epochs=8 out=runs/compare shared=../shared device=auto
while [ $# -gt 0 ]; do
    case "$1" in
        --budget) budget=$2; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --shared) shared=$2; shift 2 ;;
        --device) device=$2; shift 2 ;;
        *) echo "compare_methods.sh: unknown argument $1 (expected --budget, --epochs, --out, --shared or --device)" >&2; exit 2 ;;
    esac
done
data="$shared/data/cifar10-mini"
if [ ! -d "$data" ]; then
    echo "compare_methods.sh: no CIFAR-10 images at $data (pass --shared DIR)" >&2
    exit 2
fi
cargo build --release --quiet
rlnet="${CARGO_TARGET_DIR:-target}/release/rlnet"
common=(--preset smoke --dataset cifar10 --data-dir "$data" --budget "$budget"
        --epochs "$epochs" --frost-dir "$shared/data/frost" --device "$device")
for method in rlnet senet snl; do
    if [ "$method" = snl ] && [ ! -e "$out/snl/teacher" ] && [ -f "$out/senet/teacher/report.json" ]; then
        mkdir -p "$out/snl" && cp -r "$out/senet/teacher" "$out/snl/teacher"
    fi
    echo "== $method" >&2
    "$rlnet" pipeline --method "$method" "${common[@]}" --out "$out/$method"
done
"$rlnet" report "$out/rlnet" "$out/senet" "$out/snl" --out "$out"

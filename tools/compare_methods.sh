#!/usr/bin/env bash
# RLNet (student from random weights and from the teacher's) against the SENet and SNL
# baselines at the same exact ReLU budget, over several seeds, one command:
#   tools/compare_methods.sh [--budget 6k] [--epochs 4] [--seeds "0 1 2"] [--out runs/compare]
#                            [--shared ../shared] [--device auto|cpu|cuda] [--aa-limit 250]
#   (RLNET_BIN=path: use that rlnet binary instead of building this tree)
# Each method and seed is a `rlnet pipeline` run folder, <out>/seed<S>/<method> (resumable:
# rerun the same command after an interruption). Per seed the two RLNet students share one
# robust teacher, SENet and SNL one clean teacher (the second folder gets a copy, which the
# pipeline reuses). Data: real CIFAR-10 images from <shared>/data/cifar10-mini; NPA over the 15
# standard corruptions (frost textures from <shared>/data/frost); AdvA by PGD-20. With
# --aa-limit N (250 by default; 0: off) each student is also attacked by AutoAttack (APGD-CE,
# APGD-T, Square) on its first N test images under the BN set its AdvA is read from, into
# <run>/attacks.json. Ends with `rlnet report` over every folder: <out>/comparison.md (each
# run, then mean ± standard deviation per method over the seeds), comparison.svg and
# comparison_seeds.svg. The defaults take about 75 minutes on 2 CPU cores (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
budget=6k epochs=4 seeds="0 1 2" out=runs/compare shared=../shared device=auto aa_limit=250
while [ $# -gt 0 ]; do
    case "$1" in
        --budget) budget=$2; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --shared) shared=$2; shift 2 ;;
        --device) device=$2; shift 2 ;;
        --aa-limit) aa_limit=$2; shift 2 ;;
        *) echo "compare_methods.sh: unknown argument $1 (expected --budget, --epochs, --seeds, --out, --shared, --device or --aa-limit)" >&2; exit 2 ;;
    esac
done
data="$shared/data/cifar10-mini"
if [ ! -d "$data" ]; then
    echo "compare_methods.sh: no CIFAR-10 images at $data (pass --shared DIR)" >&2
    exit 2
fi
# RLNET_BIN=path runs that build instead of building this tree (e.g. a copy kept while the
# tree changes during a long comparison).
if [ -n "${RLNET_BIN:-}" ]; then
    rlnet=$RLNET_BIN
else
    cargo build --release --quiet
    rlnet="${CARGO_TARGET_DIR:-target}/release/rlnet"
fi
common=(--preset smoke --dataset cifar10 --data-dir "$data" --budget "$budget"
        --epochs "$epochs" --eval-pgd-steps 20 --frost-dir "$shared/data/frost"
        --device "$device")
# name, then the pipeline flags of that method.
methods=("rlnet-random:--method rlnet --student-init random"
         "rlnet-teacher:--method rlnet --student-init teacher"
         "senet:--method senet --student-init random"
         "snl:--method snl")
# The folder whose teacher a method reuses.
teacher_of() { case "$1" in rlnet-teacher) echo rlnet-random ;; snl) echo senet ;; esac; }
for seed in $seeds; do
    for entry in "${methods[@]}"; do
        name=${entry%%:*}
        read -r -a flags <<< "${entry#*:}"
        dir="$out/seed$seed/$name"
        from=$(teacher_of "$name")
        if [ -n "$from" ] && [ ! -e "$dir/teacher" ] && [ -f "$out/seed$seed/$from/teacher/report.json" ]; then
            mkdir -p "$dir" && cp -r "$out/seed$seed/$from/teacher" "$dir/teacher"
        fi
        echo "== seed $seed: $name" >&2
        SECONDS=0
        "$rlnet" pipeline "${flags[@]}" "${common[@]}" --seed "$seed" --out "$dir" --quiet
        echo "   $name, seed $seed: $SECONDS s" >&2
        if [ "$aa_limit" -gt 0 ] && [ ! -f "$dir/attacks.json" ]; then
            # RLNet's AdvA is read under BN_a; the single-BN baselines have BN_c alone.
            bn=clean
            case "$name" in rlnet-*) bn=adv ;; esac
            SECONDS=0
            "$rlnet" eval --checkpoint "$dir/distill/distill_best.safetensors" --bn "$bn" \
                --attack aa --test-limit "$aa_limit" --pgd-steps 20 --seed "$seed" \
                --device "$device" --json > "$dir/attacks.json.tmp"
            mv "$dir/attacks.json.tmp" "$dir/attacks.json"
            echo "   AutoAttack on $aa_limit images: $SECONDS s" >&2
        fi
    done
done
dirs=()
for seed in $seeds; do dirs+=("$out/seed$seed"); done
"$rlnet" report "${dirs[@]}" --out "$out"

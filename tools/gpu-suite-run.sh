#!/usr/bin/env bash
# The GPU suite's runner, copied into gpu-suite/ as run.sh by tools/gpu-check.sh (see there for
# the phases). Results go to $OUT (else gpu-suite/results): one log per phase, the bench and
# compare reports as Markdown and JSON, and summary.md with pass/fail and the headline figures,
# rewritten after every phase so that a run cut short still leaves a summary.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/results}"
mkdir -p "$out"
start=$(date +%s)
budget=${BUDGET:-540}
summary="$out/summary.md"
results=()

left() { echo $((budget - ($(date +%s) - start))); }

# Runs "$@" for at most min($1, time left) seconds; the exit status of the command (124: cut).
boxed() {
    local box=$1
    shift
    local t
    t=$(left)
    [ "$t" -lt "$box" ] && box=$t
    [ "$box" -le 5 ] && return 124
    timeout --kill-after=5 "$box" "$@"
}

record() {  # phase, status, note
    local verdict=pass
    [ "$2" -ne 0 ] && verdict="FAIL (exit $2)"
    [ "$2" -eq 124 ] && verdict="cut at its time box"
    results+=("| $1 | $verdict | $3 |")
    write_summary
}

write_summary() {
    {
        echo "# GPU suite summary"
        echo
        echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(cat "$out/env.txt" 2>/dev/null | tr '\n' ' ')"
        echo
        echo "| phase | result | notes |"
        echo "|---|---|---|"
        printf '%s\n' "${results[@]}"
        echo
        echo "Elapsed: $(( $(date +%s) - start )) s of a $budget s budget."
        [ -s "$out/headlines.md" ] && { echo; cat "$out/headlines.md"; }
    } > "$summary"
}

[ -d "$here/bin" ] || tar -C "$here" -xJf "$here/bin.tar.xz"
# libnvrtc: the system loader's list, else the pip wheel that PyTorch brings.
nvrtc_dir=$(ldconfig -p 2>/dev/null | awk '/libnvrtc\.so/{print $NF; exit}' | xargs -r dirname)
if [ -z "$nvrtc_dir" ]; then
    nvrtc_dir=$(python3 - <<'PY' 2>/dev/null
import glob, site, os
for base in site.getsitepackages():
    hits = sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib", "libnvrtc.so*")))
    if hits:
        print(os.path.dirname(hits[0])); break
PY
)
fi
{
    echo "libnvrtc: ${nvrtc_dir:-not found};"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || echo "nvidia-smi not found"
} > "$out/env.txt"
export LD_LIBRARY_PATH="${nvrtc_dir:+$nvrtc_dir:}${LD_LIBRARY_PATH:-}"
export REQUIRE_GPU=1 REQUIRE_NVRTC=1 RLNET_TEST_DEVICE=cuda
# Tests read fixtures relative to the repository (this folder's parent) and ../shared's data
# from the copy in this folder.
export RLNET_ROOT="$(cd "$here/.." && pwd)" RLNET_BIN="$here/bin/rlnet"
[ -d "$here/shared" ] && export RLNET_SHARED="$here/shared"
frost=()
[ -d "$here/shared/data/frost" ] && frost=(--frost-dir "$here/shared/data/frost")
rlnet="$here/bin/rlnet"
: > "$out/headlines.md"

# (a) The GPU tests, the four binaries at once (each runs its tests on several threads).
phase_tests() {
    local pids=() names=(gpu_parity corruptions augmix precision) filters=("" gpu_ gpu_ gpu)
    local status=0 i
    for i in 0 1 2 3; do
        boxed 150 "$here/bin/${names[$i]}" ${filters[$i]} --test-threads=6 \
            > "$out/tests-${names[$i]}.log" 2>&1 &
        pids+=($!)
    done
    for i in 0 1 2 3; do wait "${pids[$i]}" || status=$?; done
    local counts
    counts=$(grep -h "^test result" "$out"/tests-*.log | awk '{p+=$4; f+=$6} END {print p" passed, "f" failed"}')
    grep -h -E "^test .* FAILED|panicked" "$out"/tests-*.log | head -20 > "$out/tests-failures.txt"
    record tests "$status" "$counts"
}

# (b) compute-sanitizer over a short parity subset.
phase_sanitizer() {
    local cs status=0 note=""
    cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
    if [ -z "$cs" ]; then
        record sanitizer 1 "compute-sanitizer not found"
        return
    fi
    for tool in memcheck racecheck; do
        boxed 50 "$cs" --tool "$tool" --error-exitcode 3 "$here/bin/gpu_parity" --test-threads=1 \
            elementwise_and_pool bn_act_matches losses_match conv2d_matches sgd_pgd \
            > "$out/sanitizer-$tool.log" 2>&1
        local s=$?
        [ "$s" -ne 0 ] && status=$s
        note="$note $tool: $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$out/sanitizer-$tool.log" | tail -1)"
    done
    record sanitizer "$status" "$note"
}

# (c) A short rlnet bench on the GPU.
phase_bench() {
    boxed 70 "$rlnet" bench --device cuda "${frost[@]}" --min-time 0.2 --min-samples 5 \
        --json-out "$out/bench.json" > "$out/bench.md" 2> "$out/bench.log"
    local s=$?
    python3 - "$out/bench.json" >> "$out/headlines.md" 2>/dev/null <<'PY'
import json, sys, math, collections
rows = json.load(open(sys.argv[1]))["rows"]
fam = collections.defaultdict(list)
for r in rows:
    if r.get("floor_fraction"):
        fam[r["family"]].append(r["floor_fraction"])
print("## rlnet bench --device cuda: geometric mean of the fraction of each item's floor\n")
print("| family | items | of floor |\n|---|---:|---:|")
for f, v in sorted(fam.items()):
    print(f"| {f} | {len(v)} | {100 * math.exp(sum(map(math.log, v)) / len(v)):.1f}% |")
print()
PY
    record bench "$s" "bench.md, bench.json"
}

# (d) PyTorch side by side: eager first, compiled variants only with time to spare.
phase_compare() {
    local variants="eager-f32,eager-bf16-cl"
    [ "$(left)" -gt 240 ] && variants="$variants,compile-f32,compile-bf16-cl"
    boxed 130 "$rlnet" bench --device cuda --only stage1,bn_relu,conv/resnet18 --compare-torch \
        --torch-variants "$variants" --torch-peer "$here/tools/torch_peer.py" --min-time 0.2 \
        --json-out "$out/compare.json" > "$out/compare.md" 2> "$out/compare.log"
    local s=$?
    python3 - "$out/compare.json" >> "$out/headlines.md" 2>/dev/null <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
print("## PyTorch / rlnet time ratios (above 1: rlnet faster)\n")
print("| item | rlnet ms | " + " | ".join(sorted({v for r in rows for v in r["torch_ms"]})) + " |")
variants = sorted({v for r in rows for v in r["torch_ms"]})
print("|---|---:|" + "---:|" * len(variants))
for r in rows:
    m = r.get("measurement")
    if not m or not (r["name"].startswith("stage1") or r["family"] == "bn_relu"):
        continue
    ours = m["median_s"] * 1e3
    cells = [f"{r['torch_ms'][v] / ours:.2f}" if v in r["torch_ms"] else "-" for v in variants]
    print(f"| {r['name']} | {ours:.3f} | " + " | ".join(cells) + " |")
print()
PY
    record compare "$s" "variants $variants; compare.md"
}

# (e) One epoch of the teacher at full width on real CIFAR-10 images.
phase_teacher() {
    local data="$here/shared/data/cifar10-mini/cifar-10-batches-bin"
    if [ ! -d "$data" ]; then
        record teacher 1 "cifar10-mini not in the suite"
        return
    fi
    rm -rf "$out/teacher-run"
    boxed 90 "$rlnet" teacher --device cuda --dataset cifar10 --data-dir "$data" --epochs 1 \
        --batch-size 128 --eval-pgd-steps 10 --out "$out/teacher-run" --quiet \
        > "$out/teacher.log" 2>&1
    local s=$?
    local ips
    ips=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(f"{r[\"images_per_sec\"]:.0f} images/s, clean {100*r[\"metrics\"][\"clean_acc\"]:.1f}%, PGD {100*r[\"metrics\"][\"pgd_acc\"]:.1f}%")' \
        "$out/teacher-run/report.json" 2>/dev/null || echo "no report")
    printf '## rlnet teacher --device cuda, ResNet18 width 1, cifar10-mini, 1 epoch\n\n%s\n\n' "$ips" >> "$out/headlines.md"
    record teacher "$s" "$ips"
}

[ $# -eq 0 ] && set -- tests sanitizer bench compare teacher
overall=0
for phase in "$@"; do
    if [ "$(left)" -le 10 ]; then
        results+=("| $phase | not run: the budget was spent | |")
        write_summary
        overall=1
        continue
    fi
    echo "== $phase ($(left) s left)"
    case "$phase" in
        tests | sanitizer | bench | compare | teacher) "phase_$phase" ;;
        *) echo "unknown phase $phase: expected tests, sanitizer, bench, compare or teacher"; exit 2 ;;
    esac
done
grep -q "FAIL\|cut at\|not run" "$summary" && overall=1
cat "$summary"
exit $overall

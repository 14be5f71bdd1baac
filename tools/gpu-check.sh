#!/usr/bin/env bash
# Builds everything the GPU suite needs into gpu-suite/ (git-ignored): the release test and
# bench binaries, the PyTorch peer, and a runner, so a GPU machine with no Rust toolchain runs
#   bash gpu-suite/run.sh [PHASE ...]   (results under $OUT when set, else gpu-suite/results)
# Phases: tests (every test binary with REQUIRE_GPU=1), bench (`rlnet bench` on the GPU: the
# table with fractions of the floor), compare[=FILTER] (`rlnet bench --compare-torch`, only
# the items matching FILTER when given, e.g. compare=stage1,bn_relu), criterion (the
# hot_path criterion bench, GPU part). Default: tests bench. Each call of the device tool has
# 10 minutes: split long phases over calls.
# Usage here: tools/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
suite=gpu-suite
rm -rf "$suite"
mkdir -p "$suite/bin"

copy_executables() {
    # cargo's JSON messages name every built executable; keep tests and benches.
    python3 -c '
import json, sys, shutil, os
dest = sys.argv[1]
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    if m.get("reason") == "compiler-artifact" and exe and m["target"]["kind"][0] in ("test", "bench"):
        name = m["target"]["name"] + ("-bench" if m["target"]["kind"][0] == "bench" else "")
        shutil.copy2(exe, os.path.join(dest, name))
        print("  " + name)
' "$1"
}

echo "building test binaries"
cargo test --release --no-run --message-format=json 2>/dev/null | copy_executables "$suite/bin"
echo "building bench binaries"
cargo bench --no-run --message-format=json 2>/dev/null | copy_executables "$suite/bin"
cp target/release/rlnet "$suite/bin/rlnet"
mkdir -p "$suite/tools"
cp tools/torch_peer.py tools/torch_peer_items.py tools/torch_models.py "$suite/tools/"
strip --strip-debug "$suite"/bin/* 2>/dev/null || true
# The data of ../shared the tests read (cifar10-mini, 18 MB; the frost textures, 2 MB): the
# GPU machine has no ../shared.
if [ -d ../shared/data ]; then
    mkdir -p "$suite/shared/data"
    cp -r ../shared/data/cifar10-mini ../shared/data/frost "$suite/shared/data/"
fi

# The run tool carries at most 64 MiB: the binaries travel xz-compressed (61 MB -> ~8 MB) and
# run.sh unpacks them on first use.
tar -C "$suite" -cJf "$suite/bin.tar.xz" bin
rm -rf "$suite/bin"

cat > "$suite/run.sh" <<'RUN'
#!/usr/bin/env bash
# The GPU suite: every test binary with REQUIRE_GPU=1 REQUIRE_NVRTC=1, then the benches.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/results}"
mkdir -p "$out"
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
echo "libnvrtc: ${nvrtc_dir:-not found}" | tee "$out/env.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$out/env.txt" 2>&1
export LD_LIBRARY_PATH="${nvrtc_dir:+$nvrtc_dir:}${LD_LIBRARY_PATH:-}"
export REQUIRE_GPU=1 REQUIRE_NVRTC=1
# Tests that read fixtures or ../shared find them relative to this folder's parent.
export RLNET_ROOT="$(cd "$here/.." && pwd)" RLNET_BIN="$here/bin/rlnet"
[ -d "$here/shared" ] && export RLNET_SHARED="$here/shared"
status=0
frost=()
[ -d "$here/shared/data/frost" ] && frost=(--frost-dir "$here/shared/data/frost")

run_tests() {
    for t in "$here"/bin/*; do
        name=$(basename "$t")
        case "$name" in rlnet|*-bench) continue ;; esac
        echo "== $name"
        if ! "$t" --test-threads=1 --nocapture > "$out/$name.log" 2>&1; then
            echo "FAILED: $name (see $out/$name.log)"; status=1
        fi
        grep -E "^test result|FAILED|panicked" "$out/$name.log" | head -5
    done
}

run_bench() {
    echo "== rlnet bench"
    "$here/bin/rlnet" bench --device cuda "${frost[@]}" --json-out "$out/bench.json" \
        > "$out/bench.md" 2> "$out/bench.log" || { echo "FAILED: rlnet bench"; status=1; }
    cat "$out/bench.md"
}

run_compare() {  # $1: filter, may be empty
    local tag=${1:-all} only=()
    [ -n "$1" ] && only=(--only "$1")
    tag=${tag//[^A-Za-z0-9_]/_}
    echo "== rlnet bench --compare-torch ${1:-}"
    "$here/bin/rlnet" bench --device cuda "${frost[@]}" "${only[@]}" --compare-torch \
        --torch-peer "$here/tools/torch_peer.py" --json-out "$out/compare-$tag.json" \
        > "$out/compare-$tag.md" 2> "$out/compare-$tag.log" || { echo "FAILED: compare $tag"; status=1; }
    cat "$out/compare-$tag.md"
}

run_criterion() {
    for b in "$here"/bin/*-bench; do
        [ -e "$b" ] || continue
        echo "== $(basename "$b") (GPU part)"
        "$b" --bench gpu/ > "$out/$(basename "$b").log" 2>&1 || { echo "FAILED: $b"; status=1; }
        grep -E "time:|thrpt:" "$out/$(basename "$b").log" | head -60
    done
}

[ $# -eq 0 ] && set -- tests bench
for phase in "$@"; do
    case "$phase" in
        tests) run_tests ;;
        bench) run_bench ;;
        compare) run_compare "" ;;
        compare=*) run_compare "${phase#compare=}" ;;
        criterion) run_criterion ;;
        *) echo "unknown phase $phase: expected tests, bench, compare[=FILTER] or criterion"; exit 2 ;;
    esac
done
exit $status
RUN
chmod +x "$suite/run.sh"
du -sh "$suite"
echo "ready: send $suite with the run tool's carry, then: bash $suite/run.sh [tests|bench|compare[=FILTER]|criterion]"

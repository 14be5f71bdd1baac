#!/usr/bin/env bash
# Builds everything the GPU suite needs into gpu-suite/ (git-ignored): the release test binaries
# with GPU tests, rlnet itself, the PyTorch peer, the data the tests read, and a runner, so that a
# GPU machine without a Rust toolchain runs the whole suite in one call of at most 9 minutes:
#
#   tools/gpu-check.sh                      # here
#   bash gpu-suite/run.sh                   # there (results and summary.md under $OUT)
#
# run.sh's phases, in order, each time-boxed (seconds in brackets) and writing its results as it
# goes; `bash gpu-suite/run.sh PHASE...` runs only the ones named:
#   tests      [150] the GPU tests (gpu_parity, the gpu_* tests of corruptions and augmix, the
#                    *gpu* precision tests: TF32 and bf16 against the CPU)
#                    with REQUIRE_GPU=1, the three binaries in parallel over the machine's cores
#   sanitizer  [100] compute-sanitizer memcheck and racecheck over a short parity subset
#   bench      [ 70] a short `rlnet bench --device cuda` (every hot-path item against its floor)
#   compare    [130] `--compare-torch` on stage1, bn_relu and the ResNet18 convolutions, eager
#                    variants; torch.compile variants only if 120 s of the budget are left
#   teacher    [ 90] `rlnet teacher --device cuda` on cifar10-mini at full width, one epoch
#                    (images/s)
# The budget (BUDGET, default 540 s) bounds the whole run: a phase starts only with time left,
# and each is cut at its box or at the budget, whichever comes first.
set -euo pipefail
cd "$(dirname "$0")/.."
suite=gpu-suite
rm -rf "$suite"
mkdir -p "$suite/bin"

copy_tests() {
    # cargo's JSON messages name every built executable; keep the test binaries named here.
    python3 -c '
import json, sys, shutil, os
dest, keep = sys.argv[1], set(sys.argv[2:])
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    if m.get("reason") == "compiler-artifact" and exe and m["target"]["kind"][0] == "test" \
            and m["target"]["name"] in keep:
        shutil.copy2(exe, os.path.join(dest, m["target"]["name"]))
        print("  " + m["target"]["name"])
' "$@"
}

echo "building the test binaries with GPU tests"
cargo test --release --no-run --message-format=json 2>/dev/null |
    copy_tests "$suite/bin" gpu_parity corruptions augmix precision
cargo build --release --bin rlnet
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

# The run tool carries at most 64 MiB: the binaries travel xz-compressed, unpacked on first use.
tar -C "$suite" -cJf "$suite/bin.tar.xz" bin
rm -rf "$suite/bin"
cp tools/gpu-suite-run.sh "$suite/run.sh"
chmod +x "$suite/run.sh"
du -sh "$suite"
echo "ready: send $suite with the run tool's carry, then: bash $suite/run.sh"

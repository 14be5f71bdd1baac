#!/usr/bin/env bash
# The emulator's tests under AddressSanitizer, in one command: the kernels (compiled as C++ for
# the emulator) are instrumented with -fsanitize=address and the emulator's memory guard zones
# are poisoned, so any read or write outside an allocation, or of freed memory, stops the test
# with ASan's report naming the kernel's source line.
#
#   tools/emu-asan.sh            # the emulator's own tests and every GPU test, on the emulator
#   tools/emu-asan.sh TEST...    # or only these test targets (e.g. gpu_parity)
#
# Builds into target/asan (a separate build: the C++ objects differ). Needs the C++ compiler's
# libasan (g++ ships it). The tests that plant out-of-bounds writes on purpose
# (emu_planted_bugs, the emulator's guard-zone tests) are left out: ASan stops them first.
set -euo pipefail
cd "$(dirname "$0")/.."
libasan="$(${CXX:-c++} -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
    echo "emu-asan.sh: ${CXX:-c++} has no libasan.so (install the compiler's sanitizer runtime, e.g. libasan8)" >&2
    exit 1
fi
host="$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z-' 'A-Z_')"
export CARGO_TARGET_DIR=target/asan RLNET_TEST_DEVICE=emu
# The sanitizer runtime must come first in the process: preload it into the test binaries only
# (not into cargo or the compiler). The Rust side is not instrumented, and its allocations
# (mimalloc in the rlnet binary) are not ASan's: leak checking is off.
export "CARGO_TARGET_${host}_RUNNER=env LD_PRELOAD=$libasan ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0"
tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=(gpu_parity corruptions augmix)
args=()
for t in "${tests[@]}"; do args+=(--test "$t"); done
cargo test --release --features emu-asan --lib device::emu
cargo test --release --features emu-asan "${args[@]}"
echo "emu-asan.sh: no AddressSanitizer report"

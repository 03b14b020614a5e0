#!/bin/sh
# run_tests.sh: the whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs missing packages (tools/setup.sh), builds with AddressSanitizer + UBSan in build-test/,
# and runs every registered test with ctest. Exits non-zero when any test fails.
set -eu
cd "$(dirname "$0")/.."
./tools/setup.sh
cmake -S . -B build-test -DSTX_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTX_WERROR=ON >/dev/null
cmake --build build-test -j"$(nproc)"
ctest --test-dir build-test --output-on-failure --timeout 3000

#!/bin/sh
# run_tests.sh: the whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs missing packages (tools/setup.sh), builds with AddressSanitizer + UBSan in build-test/,
# and runs every registered test with ctest; then the threaded test under ThreadSanitizer in
# build-tsan/. Exits non-zero when any test fails.
set -eu
cd "$(dirname "$0")/.."
./tools/setup.sh
cmake -S . -B build-test -DSTX_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTX_WERROR=ON >/dev/null
cmake --build build-test -j"$(nproc)"
status=0
ctest --test-dir build-test --output-on-failure --timeout 3000 || status=$?
# ThreadSanitizer (issue 11, docs/robustness.md): the threaded test alone, in build-tsan/ (only
# its program is built; Release flags keep the extra build short).
cmake -S . -B build-tsan -DSTX_SANITIZE_THREAD=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-tsan --target stx_threads_tests -j"$(nproc)"
ctest --test-dir build-tsan --output-on-failure --timeout 600 -R '^threads_tsan$' || status=$?
exit "$status"

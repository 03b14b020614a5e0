#!/bin/sh
# setup.sh: installs the Debian 12 packages stx needs to build and test, when they are missing.
# As root it runs apt-get; otherwise it prints the exact command to run.
#   tools/setup.sh           what the build and the test suite need
#   tools/setup.sh --fuzz    also clang and libFuzzer, for tools/fuzz.sh (CI replays, never fuzzes)
set -eu

# libopenblas0-openmp: Debian's PyTorch calls the system BLAS (update-alternatives picks
# OpenBLAS over the reference BLAS once it is installed): without it PyTorch's matrix products,
# and so the zoo's training and the PyTorch side of the benchmarks, are several times slower.
# FFmpeg's libraries decode and encode video, libpng/giflib write images; opencv-doc ships the
# sample video (vtest.avi) the video tests decode, chromium loads the HTML report headless in the
# tests, and matplotlib is the oracle for the colour maps; python3-opencv's Farneback optical
# flow (AOSA's default) is the reference the flow tests compare stx's own flow with;
# python3-skimage's slic is the oracle of the 3-D SLIC supervoxels (--segments slic).
# With --fuzz: clang and libclang-rt-14-dev (libFuzzer) build the fuzz harnesses (tools/fuzz.sh).
# python3-scipy's spearmanr (with python3-skimage's structural_similarity) is the oracle of the
# sanity checks' map similarities (tests/models/test_sanity.py).
PACKAGES="build-essential cmake pkg-config clang-format
libdnnl-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev libonnx-testdata
python3 python3-numpy python3-pil python3-torch python3-torchvision python3-onnx
libopenblas0-openmp
libavformat-dev libavcodec-dev libswscale-dev libavutil-dev libpng-dev libgif-dev
opencv-doc chromium python3-matplotlib python3-opencv python3-skimage
python3-scipy"
if [ "${1:-}" = "--fuzz" ]; then
    PACKAGES="$PACKAGES clang libclang-rt-14-dev"
fi

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "setup: all packages present"
    exit 0
fi

cmd="apt-get install -y$missing"
if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q $missing
else
    echo "setup: missing packages:$missing"
    echo "setup: run as root:  apt-get update && $cmd"
    exit 1
fi

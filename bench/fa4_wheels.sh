#!/usr/bin/env bash
# FlashAttention-4 and its CuTe DSL libraries (CUDA 13) as wheels for the GPU
# machine's Python 3.12, split in two parts: the libraries' wheel alone is
# 92 MB, more than one device call may carry (64 MiB). Run here, then carry
# .fa4a in one call and .fa4b in the next, to the same warm machine:
#
#   bash bench/fa4_wheels.sh
#   call 1, carry [".fa4a"]:  mkdir -p /tmp/fa4parts && cp .fa4a/* /tmp/fa4parts/
#   call 2, carry [".fa4b"]:  R=$PWD; cd /tmp/fa4parts && cp $R/.fa4b/* . && cat fa4part.* | tar x &&
#       python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/fa4site *.whl; cd $R
#   then every call: export PYTHONPATH=/tmp/fa4site:/tmp/fa4site/nvidia_cutlass_dsl/dsl_packages:$PYTHONPATH
#   (the second path is what the libraries' .pth file adds, which --target does not run).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.fa4a/' .git/info/exclude 2>/dev/null || printf '/.fa4a/\n/.fa4b/\n' >> .git/info/exclude
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 -d "$tmp" \
  flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1 \
  nvidia-cutlass-dsl-libs-core==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1 quack-kernels==0.6.5 \
  apache-tvm-ffi==0.1.15.post2 torch-c-dlpack-ext==0.1.5
rm -rf .fa4a .fa4b && mkdir .fa4a .fa4b
(cd "$tmp" && tar cf - ./*.whl) | split -b 60M - "$tmp/fa4part."
mv "$tmp/fa4part.aa" .fa4a/ && mv "$tmp"/fa4part.a[b-z] .fa4b/
# The second call also brings what the runner code imports that the machine lacks.
cp .whl/diffusers-*.whl .whl/msgspec-*.whl .whl/structlog-*.whl .whl/importlib_metadata-*.whl .fa4b/ 2>/dev/null || true
du -sh .fa4a .fa4b

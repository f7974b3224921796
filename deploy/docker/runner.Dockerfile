# GPU runner image: the CUDA 13 stack the benchmarks measured (docs/benchmarks.md:
# torch 2.11.0+cu130 on CUDA 13.0, diffusers 0.42.1), pinned in
# runner-constraints.txt. The GPU driver comes from the node (NVIDIA GPU
# operator / container toolkit).
#
# Minimum NVIDIA driver: 580.65.06 (the CUDA 13.0 release driver). The base
# image's NVIDIA_REQUIRE_CUDA=cuda>=13.0 makes the container toolkit refuse to
# start it on an older driver, with that reason, instead of failing in torch.
#
# Two images from this file (deploy/scripts/build-images.sh builds both):
#   EXTRAS=runner      ghcr.io/mochi-serve/mochi-serve-runner:<version>-cu130
#   EXTRAS=runner,fa4  ghcr.io/mochi-serve/mochi-serve-runner:<version>-cu130-fa4
#     FlashAttention-4 (flash-attn-4[cu13], ~240 MB) for MOCHI_ATTENTION_KERNEL=fa4
#     on Hopper/Blackwell; the h100x8 overlay runs this one.
FROM nvidia/cuda:13.0.0-runtime-ubuntu24.04

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
ARG EXTRAS=runner
# HF_HUB_OFFLINE: the runner loads weights from MOCHI_MODEL_DIR only and must
# never reach for the Hub (the weights download sets it back to 0).
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    HF_HOME=/tmp/hf \
    HF_HUB_OFFLINE=1

# gcc and the Python headers: Triton builds a small launcher module at run
# time, which MOCHI_COMPILE_BLOCKS=true (torch.compile) needs. tini: PID 1,
# so that SIGTERM reaches the runner with its default action (a Python PID 1
# ignores it until a handler is installed, e.g. while the model loads).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev tini \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY deploy/docker/runner-constraints.txt ./
COPY contracts ./contracts
COPY services ./services
# torch first from the CUDA 13 index, so `.[runner]` finds it satisfied; the
# constraints hold every other measured version.
RUN pip install torch -c runner-constraints.txt --index-url "$TORCH_INDEX" \
 && pip install ".[$EXTRAS]" -c runner-constraints.txt \
 && rm -rf /src

RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp mochi
USER 10001
WORKDIR /tmp
ENTRYPOINT ["tini", "--", "mochi"]
CMD ["runner"]

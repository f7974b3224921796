# GPU runner image: CUDA runtime, torch with CUDA, diffusers. The GPU driver
# comes from the node (NVIDIA GPU operator / container toolkit).
# Build from the repository root:
#   docker build -f deploy/docker/runner.Dockerfile -t ghcr.io/mochi-serve/mochi-serve-runner:0.1.0-cuda12.8 .
# (Not built in this repository's CI: it has no container engine.)
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
# HF_HUB_OFFLINE: the runner loads weights from MOCHI_MODEL_DIR only and must
# never reach for the Hub (the weights Job sets it back to 0).
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
# time, which MOCHI_COMPILE_BLOCKS=true (torch.compile) needs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY services ./services
# torch first from the CUDA index, so `.[runner]` finds it satisfied. The fa4
# extra (FlashAttention-4, ~240 MB) is used only where MOCHI_ATTENTION_KERNEL=fa4.
RUN pip install torch --index-url "$TORCH_INDEX" \
 && pip install ".[runner,fa4]" \
 && rm -rf /src

RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp mochi
USER 10001
WORKDIR /tmp
ENTRYPOINT ["mochi"]
CMD ["runner"]

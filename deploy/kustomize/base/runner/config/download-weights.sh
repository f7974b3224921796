#!/bin/sh
# Download what the runner loads from genmo/mochi-1-preview into the node's
# model directory, once (about 40 GB; docs/deploy.md has the file sizes):
#   transformer/, vae/  the bf16 variant only: its shards and its index (*.bf16*)
#   text_encoder/       T5's plain files: the repository has no bf16 variant of it
#   model_index.json, each component's config.json, tokenizer/, scheduler/
# Never the original checkpoints at the root (dit.safetensors alone is 40 GB),
# nor the fp32 transformer and VAE, nor the fp32 transformer's index (it would
# name shards that are not here). The runner loads with variant="bf16" and
# diffusers falls back to the plain files per component, so nothing is renamed.
#
# The download goes to a staging directory that is kept between runs (hf
# resumes from, or hashes and keeps, what it finds there), is checked with
# `mochi model check`, and is renamed at the end: a runner never sees half a model.
set -eu
root="${MODEL_ROOT:-/models}"
dest="$root/mochi-1-preview"
stage="$root/.mochi-1-preview.partial"

# The shell is PID 1 of its container and defers a trapped signal until a
# foreground child ends (a download takes many minutes): each step runs in the
# background and the shell waits, so SIGTERM stops the step and the script at once.
child=""
stop() {
  if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null || true; fi
  echo "stopped; the next run resumes from $stage" >&2
  exit 143
}
trap stop TERM INT HUP
step() {
  "$@" &
  child=$!
  status=0
  wait "$child" || status=$?
  child=""
  return "$status"
}

if [ -f "$dest/model_index.json" ]; then
  if step mochi model check "$dest" >/dev/null; then
    echo "weights already in $dest; delete that directory on the node to download again"
    exit 0
  fi
  echo "$dest fails the model check (above): fix it, or delete it on the node to download again" >&2
  exit 1
fi
mkdir -p "$stage"
# hf matches each pattern against the whole repository path, and `*` crosses
# `/`: "*/config.json" is every component's config, "*.bf16*" every bf16 file.
step hf download "$REPO" --revision "$REVISION" --local-dir "$stage" \
  --include "model_index.json" --include "*/config.json" --include "*.bf16*" \
  --include "text_encoder/*" --include "tokenizer/*" --include "scheduler/*"
step mochi model check "$stage"
# hf's own bookkeeping (what it downloaded, for resuming); the runner does not need it.
rm -rf "$stage/.cache"
mv "$stage" "$dest"
echo "weights ready in $dest"

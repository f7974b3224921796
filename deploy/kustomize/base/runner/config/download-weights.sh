#!/bin/sh
# Download genmo/mochi-1-preview's bf16 weights into the node's model
# directory, once. The runner loads the directory without a `variant`, so each
# bf16 file also gets its default name as a link. The download goes to a
# staging directory that is renamed at the end: a runner never sees half a model.
set -eu
root="${MODEL_ROOT:-/models}"
dest="$root/mochi-1-preview"
stage="$root/.mochi-1-preview.partial"
if [ -f "$dest/model_index.json" ]; then
  echo "weights already in $dest; delete that directory on the node to download again"
  exit 0
fi
mkdir -p "$stage"
# Configs, tokenizer files and the bf16 weights only (not the fp32 ones).
hf download "$REPO" --revision "$REVISION" --local-dir "$stage" \
  --include "*.json" --include "*.txt" --include "*.model" --include "*.bf16*"
find "$stage" -name '*.bf16*' -not -path '*/.cache/*' | while read -r f; do
  ln -sf "$(basename "$f")" "$(dirname "$f")/$(basename "$f" | sed 's/\.bf16//')"
done
mv "$stage" "$dest"
echo "weights ready in $dest"

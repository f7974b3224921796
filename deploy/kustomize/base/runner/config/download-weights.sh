#!/bin/sh
# Download genmo/mochi-1-preview's bf16 weights into the node's model
# directory, once. The runner loads the directory without a `variant`, so each
# bf16 file also gets its default name as a link. The download goes to a
# staging directory that is renamed at the end: a runner never sees half a model.
set -eu
dest="/models/mochi-1-preview"
stage="/models/.mochi-1-preview.partial"
if [ -f "$dest/model_index.json" ]; then
  echo "weights already in $dest; delete that directory on the node to download again"
  exit 0
fi
mkdir -p "$stage"
if command -v hf >/dev/null 2>&1; then cli="hf download"; else cli="huggingface-cli download"; fi
# shellcheck disable=SC2086  # $cli is two words on purpose
$cli "$REPO" --revision "$REVISION" --local-dir "$stage" \
  --include "*.json" "*.txt" "*.model" "*.bf16*"
find "$stage" -name '*.bf16*' -not -path '*/.cache/*' | while read -r f; do
  ln -sf "$(basename "$f")" "$(dirname "$f")/$(basename "$f" | sed 's/\.bf16//')"
done
mv "$stage" "$dest"
echo "weights ready in $dest"

#!/usr/bin/env bash
# The API under a constant mixed load from Go's `hey` (Debian package `hey`),
# which costs far less CPU than a Python generator on the same two cores:
# 10% submits, 60% gets, 30% lists, RATE requests/s in all, for SECONDS.
#   bash bench/load_hey.sh 500 60
set -euo pipefail
RATE=${1:-500}; SECONDS_=${2:-60}
PY=${PYTHON:-.venv/bin/python}
command -v hey >/dev/null || { echo "install Debian's hey: apt-get install -y hey" >&2; exit 2; }
OUT=$(mktemp -d)
# Start a stack (nats-server, catalog, API; no runner) through the Python load bench's helper.
$PY - "$OUT" <<'PYEOF' &
import sys, time
from pathlib import Path
sys.path.insert(0, "bench")
from load_api import start_stack
stack, url = start_stack(Path(sys.argv[1]))
Path(sys.argv[1], "url").write_text(url)
try:
    while not Path(sys.argv[1], "done").exists():
        time.sleep(0.5)
finally:
    stack.stop()
PYEOF
STACK=$!
while [ ! -f "$OUT/url" ]; do sleep 0.5; done
URL=$(cat "$OUT/url")
BODY='{"prompt":"load test","width":64,"height":64,"num_frames":7,"num_inference_steps":2}'
JOB=$(curl -s -X POST "$URL/v1/jobs" -H 'content-type: application/json' -d "$BODY" | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
# hey's -q is per worker: workers x q = the rate of each endpoint.
run() { local name=$1; shift; hey -z "${SECONDS_}s" -c "$1" -q "$2" "${@:3}" > "$OUT/$name.txt" 2>&1; }
run submit 10 $((RATE / 100)) -m POST -T application/json -d "$BODY" "$URL/v1/jobs" & A=$!
run get 30 $((RATE / 50)) "$URL/v1/jobs/$JOB" & B=$!
run list 15 $((RATE / 50)) "$URL/v1/jobs?limit=20" & C=$!
wait $A $B $C
touch "$OUT/done"; wait $STACK || true
for f in "$OUT"/*.txt; do
  echo "== $(basename "$f" .txt)"
  grep -E "Requests/sec|Average|50%|99%|Slowest|\[2[0-9][0-9]\]|\[[345][0-9][0-9]\]|Error" "$f" | sed 's/^ */  /'
done

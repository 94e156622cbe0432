#!/usr/bin/env bash
# Runs on a freshly started GPU machine with .gpu carried: does a short bench agree with a full
# one, and does the bench agree with the tuner on the same configs? (Issue: timings that hold
# while the GPU clock moves.) Everything goes to $OUT.
#   bash bench/gpu_timing.sh [problem] [dtype]
set -uo pipefail
source .gpu/setup.sh
problem=${1:-kimi-linear-tp4} dtype=${2:-f16}
bench="deno run --cached-only -A bench/bench.ts --problem $problem --dtype $dtype"
# 1. Two short runs right after start, on the committed cache.
$bench --buckets 1,16,256 --out "$OUT/short1" > "$OUT/short1.log" 2>&1
$bench --buckets 1,16,256 --out "$OUT/short2" > "$OUT/short2.log" 2>&1
# 2. A fresh tune into a scratch cache, then a short bench of its winners: the bench's
#    "fused GEMM" column against the tuner's fused-stage time, config for config.
start=$SECONDS
deno run --cached-only -A tuner/cli.ts --problem "$problem" \
  --dtype "$dtype" --cache-dir /tmp/fresh --log-dir /tmp/freshlog --quiet > "$OUT/tune.log" 2>&1
echo "tune wall $((SECONDS - start)) s" >> "$OUT/tune.log"
cp /tmp/freshlog/*.jsonl /tmp/fresh/*.json "$OUT/" 2>/dev/null
$bench --buckets 1,16,256 --cache-dir /tmp/fresh --out "$OUT/fresh" > "$OUT/fresh.log" 2>&1
# 3. The full run on the committed cache, last (the longest).
timeout "${FULL_LIMIT:-280}" $bench --out "$OUT/full" > "$OUT/full.log" 2>&1
for f in short2 full; do
  deno run --cached-only --allow-read bench/agreement.ts "$OUT"/short1/*.json "$OUT"/$f/*.json \
    > "$OUT/agree-short1-$f.txt" 2>&1
done
tail -n 3 "$OUT"/*.log "$OUT"/*.txt

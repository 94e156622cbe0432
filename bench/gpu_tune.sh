#!/usr/bin/env bash
# Runs on the GPU machine: tunes problems into the repo's cache/ (which travels with the
# working tree), then copies the cache file and trial logs to $OUT to bring them back.
#   bash bench/gpu_tune.sh "kimi-linear-tp4" "f32,f16,bf16" [extra tune flags...]
set -uo pipefail
source .gpu/setup.sh
problems=$1 dtypes=$2
shift 2
for p in ${problems//,/ }; do
  # --cached-only: the machine has no network; .gpu carries every package of deno.lock.
  deno run --cached-only -A tuner/cli.ts --problem "$p" --dtype "$dtypes" --quiet "$@" 2>&1 | tee -a "$OUT/tune.log"
done
cp cache/*.json "$OUT/" 2>/dev/null
mkdir -p "$OUT/logs"
for p in ${problems//,/ }; do cp cache/logs/*/"$p"-*.jsonl "$OUT/logs/" 2>/dev/null; done
ls -la "$OUT" "$OUT/logs"

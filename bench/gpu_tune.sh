#!/usr/bin/env bash
# Runs on the GPU machine: tunes problems into the repo's cache/ (which travels with the
# working tree), then copies the cache file and trial logs to $OUT to bring them back.
#   bash bench/gpu_tune.sh "kimi-linear-tp4" "f32,f16,bf16" [extra tune flags...]
set -uo pipefail
source .gpu/setup.sh
problems=$1 dtypes=$2
shift 2
mkdir -p "$OUT/logs"
# Copied after each weight type, so that a run cut off by the time limit keeps what finished.
for p in ${problems//,/ }; do
  for d in ${dtypes//,/ }; do
    # --cached-only: the machine has no network; .gpu carries every package of deno.lock.
    deno run --cached-only -A tuner/cli.ts --problem "$p" --dtype "$d" --quiet "$@" 2>&1 | tee -a "$OUT/tune.log"
    cp cache/*.json "$OUT/" 2>/dev/null
    cp cache/logs/*/"$p"-*.jsonl "$OUT/logs/" 2>/dev/null
  done
done
ls -la "$OUT" "$OUT/logs"

#!/usr/bin/env bash
# Runs on the GPU machine: tunes problems into the repo's cache/ (which travels with the
# working tree), then copies the cache file and trial logs to $OUT to bring them back.
#   bash bench/gpu_tune.sh "kimi-linear-tp4" "f32,f16,bf16" [extra tune flags...]
set -uo pipefail
source .gpu/setup.sh
problems=$1 dtypes=$2
shift 2
mkdir -p "$OUT/logs"
touch "$OUT/.start"
# Copied after each weight type, so that a run cut off by the time limit keeps what finished.
for p in ${problems//,/ }; do
  for d in ${dtypes//,/ }; do
    # --cached-only: the machine has no network; .gpu carries every package of deno.lock.
    deno run --cached-only -A tuner/cli.ts --problem "$p" --dtype "$d" --quiet "$@" 2>&1 | tee -a "$OUT/tune.log"
    cp cache/*.json "$OUT/" 2>/dev/null
    # Only the logs this run wrote: other adapters' logs of the same name, and the exhaustive
    # logs, stay (the device returns a limited number of files).
    find cache/logs -name "$p-*.jsonl" -newer "$OUT/.start" -exec cp {} "$OUT/logs/" \;
  done
done
ls -la "$OUT" "$OUT/logs"

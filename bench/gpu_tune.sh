#!/usr/bin/env bash
# Runs on the GPU machine: tunes problems into the repo's cache/ (which travels with the
# working tree), then packs the cache file and the trial logs this run wrote into $OUT.
#   bash bench/gpu_tune.sh "kimi-linear-tp4" "f32,f16,f16-fast,bf16" [extra tune flags...]
# Several runs into one archive: touch /tmp/since, then TUNE_SINCE=/tmp/since on each.
# "f16-fast" is f16 weights with --precision fast (the bench's name for it).
# A log committed gzipped (cache/logs/<gpu>/*.jsonl.gz) is unpacked by the tune and resumed.
# A log whose .gz is committed goes into the archive gzipped, over that .gz, so that back here
# `tar xzf <files_at>/tune.tgz` over the checkout is all (one archive: the device returns a limited
# number of files, and a log left behind is lost).
set -uo pipefail
source .gpu/setup.sh
problems=$1 dtypes=$2
shift 2
# TUNE_SINCE: a file older than every log to pack, shared by several runs into one $OUT.
since=${TUNE_SINCE:-$OUT/.start}
[ -e "$since" ] || touch "$since"
# Packed after each weight type, so that a run cut off by the time limit keeps what finished.
for p in ${problems//,/ }; do
  for d in ${dtypes//,/ }; do
    flags=(--dtype "$d")
    [ "$d" = f16-fast ] && flags=(--dtype f16 --precision fast)
    # --cached-only: the machine has no network; .gpu carries every package of deno.lock.
    deno run --cached-only -A tuner/cli.ts --problem "$p" "${flags[@]}" --quiet "$@" 2>&1 |
      tee -a "$OUT/tune.log"
    # The cache files, and only the logs written by this run (the exhaustive logs and other
    # adapters' logs stay).
    find cache -maxdepth 1 -name '*.json' > "$OUT/.files"
    find cache/logs -name '*.jsonl' -newer "$since" | while read -r log; do
      if [ -e "$log.gz" ]; then gzip -c "$log" > "$log.gz" && echo "$log.gz"; else echo "$log"; fi
    done >> "$OUT/.files"
    tar czf "$OUT/tune.tgz" -T "$OUT/.files"
  done
done
rm -f "$OUT/.files" "$OUT/.start"
tar tzf "$OUT/tune.tgz"

#!/usr/bin/env bash
# Runs on the GPU machine: a space of bench/spaces/ timed exhaustively (every valid config at
# every bucket) for each weight type, with the space's own cache and logs (cache/ is left alone).
# Writes each run's output, trial log and fused/batched tables (bench/log_table.ts) to $OUT.
#   bash bench/gpu_space.sh <problem> <space> <buckets> <weight type>...
#   bash bench/gpu_space.sh kimi-linear-tp4 stream-double-f32 64,128,256 f32 f16 f16-fast
# "f16-fast" is f16 weights with --precision fast. RUN_LIMIT (seconds, default 240) bounds each run.
set -uo pipefail
[ -n "${OUT:-}" ] || { echo "run on the GPU machine (\$OUT is unset)" >&2; exit 2; }
mkdir -p "$OUT"
source .gpu/setup.sh
problem=$1 space=$2 buckets=$3
shift 3
for name in "$@"; do
  flags=(--dtype "$name")
  [ "$name" = f16-fast ] && flags=(--dtype f16 --precision fast)
  start=$SECONDS
  timeout "${RUN_LIMIT:-240}" deno run --cached-only -A tuner/cli.ts --problem "$problem" \
    "${flags[@]}" --space "bench/spaces/$space.yaml" --strategy exhaustive --max-trials 100% \
    --buckets "$buckets" --cache-dir "/tmp/gpu-space/$space-$name" \
    --log-dir "$OUT/logs-$name" --no-unfused --quiet > "$OUT/$name.log" 2>&1
  echo "$name: exit $?, $((SECONDS - start)) s" | tee -a "$OUT/$name.log"
  for stage in fused batched; do
    deno run --cached-only --allow-read bench/log_table.ts "$OUT/logs-$name"/*.jsonl $stage \
      > "$OUT/$name-$stage.txt"
  done
done

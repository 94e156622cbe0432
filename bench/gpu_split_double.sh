#!/usr/bin/env bash
# Runs on the GPU machine only: split-K with double-buffered tiles, and split-K past
# m x split = 2048, exhaustive at m = 64-4096 against stream-K and the plain tiles, tp4, f32 and
# f16 "fast" (NOTES.md, "Plan: split-K with double buffering for the mid-range").
# It relaxes the default space's row rules in the machine's copy of kernels/ (DOUBLE_ROWS to 64,
# SPLIT_ROWS to 8192; double buffering with split is in the rules since this experiment) and puts
# them back at the end; it stops if an edit does not take.
# Writes each run's log and fused/batched tables to $OUT (bench/gpu_space.sh).
#   bash bench/gpu_split_double.sh
set -uo pipefail
[ -n "${OUT:-}" ] || { echo "run on the GPU machine: it edits kernels/ (\$OUT is unset)" >&2; exit 2; }
mkdir -p /tmp/split-double && cp kernels/config.ts /tmp/split-double/
sed -i -e 's/^export const DOUBLE_ROWS = 4096;/export const DOUBLE_ROWS = 64;/' \
  -e 's/^export const SPLIT_ROWS = 4096;/export const SPLIT_ROWS = 8192;/' kernels/config.ts
if [ "$(grep -c '^export const DOUBLE_ROWS = 64;\|^export const SPLIT_ROWS = 8192;' kernels/config.ts)" != 2 ]; then
  echo "kernels/config.ts no longer has the constants this script edits" >&2
  cp /tmp/split-double/config.ts kernels/
  exit 1
fi
bash bench/gpu_space.sh kimi-linear-tp4 split-double-f32 64,128,256,512,1024,2048,4096 f32
bash bench/gpu_space.sh kimi-linear-tp4 split-half-f16 64,128,256,512,1024,2048,4096 f16-fast
cp /tmp/split-double/config.ts kernels/

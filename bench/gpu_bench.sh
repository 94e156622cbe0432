#!/usr/bin/env bash
# Runs on the GPU machine with .gpu carried (../shared/gpu/prepare): the benchmark, offline,
# then copies its JSON to $OUT to bring back; draw the chart here afterwards with
#   deno run -A bench/chart.ts bench/results/<gpu>-<problem>.json
#   bash bench/gpu_bench.sh [bench flags...]     e.g. --problem kimi-linear-tp4 --torch
set -uo pipefail
source .gpu/setup.sh
deno run --cached-only -A bench/bench.ts "$@" 2>&1 | tee -a "${OUT:-.}/bench.log"
cp bench/results/*.json "${OUT:-.}/" 2>/dev/null
ls -la "${OUT:-.}"

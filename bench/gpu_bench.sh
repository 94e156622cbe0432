#!/usr/bin/env bash
# Runs on the GPU machine with .gpu carried (../shared/gpu/prepare): the benchmark, offline,
# then copies its JSON to $OUT to bring back; draw the chart here afterwards with
#   deno run -A bench/chart.ts bench/results/<gpu>-<problem>.json
#   bash bench/gpu_bench.sh [bench flags...]     e.g. --problem kimi-linear-tp4 --torch
set -uo pipefail
source .gpu/setup.sh
touch /tmp/gpu_bench.start
deno run --cached-only -A bench/bench.ts "$@" 2>&1 | tee -a "${OUT:-.}/bench.log"
# Only the JSON this run wrote: the device brings back a limited number of files, and the
# committed results of other runs would crowd out the logs.
find bench/results -maxdepth 1 -name '*.json' -newer /tmp/gpu_bench.start -exec cp {} "${OUT:-.}/" \;
ls -la "${OUT:-.}"

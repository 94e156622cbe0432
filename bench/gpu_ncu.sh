#!/usr/bin/env bash
# Runs on the GPU machine (NVIDIA; ncu is in /usr/local/cuda/bin there), with .gpu carried:
# Nsight Compute's sections for each config's dispatches, nothing else on the GPU
# (bench/sass_compile.ts --runs). Writes $OUT/<config>-ncu.txt (the details page: issue slots,
# pipes, warp stall reasons, shared-memory conflicts, occupancy) and $OUT/<config>-source.csv
# (per SASS instruction: the stall samples). Whether ncu sees WebGPU's Vulkan dispatches at all
# is what ncu.log tells first. Unproven: the one call that ran it (2026-12-07) lost its machine
# before anything came back, so run it last and in a call of its own.
#   bash bench/gpu_ncu.sh <m> <dtype> <config>...
#   bash bench/gpu_ncu.sh 4096 f16 outer-bm128-bn64-bk32-rm4-rn8-h-sp outer-bm128-bn64-bk32-rm8-rn4-h
set -uo pipefail
[ -n "${OUT:-}" ] || { echo "run on the GPU machine (\$OUT is unset)" >&2; exit 2; }
source .gpu/setup.sh
export PATH=$PATH:/usr/local/cuda/bin
m=$1 dtype=$2
shift 2
SECTIONS="--section SpeedOfLight --section ComputeWorkloadAnalysis --section InstructionStats
  --section SchedulerStats --section WarpStateStats --section MemoryWorkloadAnalysis_Tables
  --section Occupancy --section LaunchStats --section SourceCounters"
for config in "$@"; do
  # Two runs: the first warms the clocks and caches; the second is the one profiled (a kernel with
  # a reduction launches twice per run).
  # The sections that answer the question (issue, pipes, stalls, shared-memory conflicts,
  # occupancy), fewer replay passes than --set full; NCU_SECTIONS="--set full" for everything.
  # shellcheck disable=SC2086
  timeout "${NCU_LIMIT:-200}" ncu --target-processes all ${NCU_SECTIONS:-$SECTIONS} --import-source no \
    --launch-count "${NCU_LAUNCHES:-4}" -f -o "/tmp/$config" \
    deno run --cached-only -A bench/sass_compile.ts "$config" --dtype "$dtype" --runs 2 --m "$m" \
    >> "$OUT/ncu.log" 2>&1
  echo "$config: ncu exit $?" | tee -a "$OUT/ncu.log"
  [ -e "/tmp/$config.ncu-rep" ] || continue
  ncu -i "/tmp/$config.ncu-rep" --page details > "$OUT/$config-ncu.txt" 2>&1
  ncu -i "/tmp/$config.ncu-rep" --page source --csv --print-source sass \
    > "$OUT/$config-source.csv" 2>&1
  gzip -f "$OUT/$config-source.csv"
done
tail -30 "$OUT/ncu.log"

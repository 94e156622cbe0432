#!/usr/bin/env bash
# Runs on the GPU machine: bench/stream_probe.ts on this tree's kernels/reduce.ts (A) and on
# another version of it (B), interleaved per m, so that both are timed on the same warm GPU.
# Each run's output goes to $OUT/probe-{a,b}-<m>.log, all packed into $OUT/probe.tgz.
#   git show stream-reduce-vec4:kernels/reduce.ts > /tmp/b_reduce.ts   # here; then carry it, e.g.
#   cp /tmp/b_reduce.ts probe_b_reduce.ts                               # (untracked files travel)
#   bash bench/gpu_reduce_ab.sh probe_b_reduce.ts 1024,256
# kernels/reduce.ts is restored on exit.
set -uo pipefail
[ -n "${OUT:-}" ] || { echo "run on the GPU machine (\$OUT is unset)" >&2; exit 2; }
b_file=$1 ms=${2:-1024,256}
source .gpu/setup.sh
cp kernels/reduce.ts "$OUT/.a_reduce.ts"
trap 'cp "$OUT/.a_reduce.ts" kernels/reduce.ts; rm -f "$OUT/.a_reduce.ts"' EXIT
probe() { # $1 a|b, $2 m
  local s=$SECONDS
  deno run --cached-only -A bench/stream_probe.ts --m "$2" > "$OUT/probe-$1-$2.log" 2>&1
  echo "== $1 m=$2 ($((SECONDS - s)) s)"
  tail -8 "$OUT/probe-$1-$2.log"
}
for m in ${ms//,/ }; do
  cp "$OUT/.a_reduce.ts" kernels/reduce.ts && probe a "$m"
  cp "$b_file" kernels/reduce.ts && probe b "$m"
  (cd "$OUT" && tar czf probe.tgz probe-*.log)
done

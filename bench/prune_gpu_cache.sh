#!/usr/bin/env bash
# After ../shared/gpu/prepare: drops the chart library (vega, d3) from the carried deno cache, so
# that .gpu and the working tree fit the GPU machine's 64 MiB carry limit. bench/bench.ts loads
# bench/chart.ts lazily and, without it, says how to draw the chart afterwards.
set -euo pipefail
reg="$(git rev-parse --show-toplevel)/.gpu/deno_dir/npm/registry.npmjs.org"
rm -rf "$reg"/vega* "$reg"/d3* "$reg"/@types "$reg"/topojson-client "$reg"/delaunator "$reg"/robust-predicates
du -sh "$(dirname "$(dirname "$(dirname "$reg")")")"

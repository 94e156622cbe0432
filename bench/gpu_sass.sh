#!/usr/bin/env bash
# Runs on the GPU machine (NVIDIA; nvdisasm and cuobjdump are in /usr/local/cuda/bin there), with
# .gpu and .sass carried (bench/build_sass_tools.sh builds .sass here): what each config compiles
# to. Each config is compiled alone (bench/sass_compile.ts) into a shader-cache folder of its own,
# which .sass/nvcachedec unpacks; nvdisasm lists the largest object (the compute shader) into
# $OUT/<config>.sass, and bench/sass_count.ts counts the listings' opcodes side by side into
# $OUT/sass-counts.txt, and their k loops' into $OUT/sass-loop-counts.txt. The raw cache of a
# config that gives no listing is packed into $OUT.
#   bash bench/gpu_sass.sh [--dtype f16] <config>...
#   bash bench/gpu_sass.sh outer-bm128-bn64-bk32-rm8-rn4-h outer-bm128-bn64-bk32-rm8-rn4-h-sp
set -uo pipefail
[ -n "${OUT:-}" ] || { echo "run on the GPU machine (\$OUT is unset)" >&2; exit 2; }
mkdir -p "$OUT"
[ -x .sass/nvcachedec ] || { echo "no .sass/nvcachedec: bash bench/build_sass_tools.sh here" >&2; exit 2; }
source .gpu/setup.sh
export PATH=$PATH:/usr/local/cuda/bin
flags=()
if [ "${1:-}" = --dtype ]; then flags=(--dtype "$2"); shift 2; fi
for config in "$@"; do
  cache=/tmp/sass-cache/$config objs=/tmp/sass-objs/$config
  rm -rf "$cache" "$objs" && mkdir -p "$cache" "$objs"
  __GL_SHADER_DISK_CACHE=1 __GL_SHADER_DISK_CACHE_PATH=$cache __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1 \
    deno run --cached-only -A bench/sass_compile.ts "$config" "${flags[@]}" 2>&1 | tee -a "$OUT/sass.log"
  find "$cache" -name '*.toc' | while read -r toc; do
    .sass/nvcachedec "$toc" "$objs/$(basename "$toc" .toc)" >> "$OUT/sass.log" 2>&1
  done
  obj=$(ls -S "$objs"/*/*.nvuc "$objs"/*/*.elf 2>/dev/null | head -1)
  if [ -n "$obj" ] && { nvdisasm "$obj" || cuobjdump -sass "$obj"; } > "$OUT/$config.sass" 2>> "$OUT/sass.log"; then
    echo "$config: $(grep -c '/\*[0-9a-f]*\*/' "$OUT/$config.sass") instructions from $obj" | tee -a "$OUT/sass.log"
  else
    echo "$config: no listing; the raw cache is in $OUT/$config-cache.tgz" | tee -a "$OUT/sass.log"
    rm -f "$OUT/$config.sass"
    tar czf "$OUT/$config-cache.tgz" -C /tmp/sass-cache "$config"
  fi
done
# The whole listings, then the k loops alone (what a kernel issues per trip).
if ls "$OUT"/*.sass > /dev/null 2>&1; then
  deno run --cached-only --allow-read bench/sass_count.ts "$OUT"/*.sass > "$OUT/sass-counts.txt"
  deno run --cached-only --allow-read bench/sass_count.ts --loop "$OUT"/*.sass |
    tee "$OUT/sass-loop-counts.txt"
fi

#!/usr/bin/env bash
# Builds nvcachedec from nvcachetools (github.com/therontarigo/nvcachetools, ISC licence; it
# unpacks the NVIDIA driver's shader cache) as a static binary into .sass/ (ignored by git), for
# bench/gpu_sass.sh to carry to the GPU machine, which has no network and no zstd headers.
#   bash bench/build_sass_tools.sh <nvcachetools source folder, or its git folder>
# Needs cc and libzstd-dev (apt-get install libzstd-dev). The source can come from the device
# tool's library: `fetch github:therontarigo/nvcachetools` gives its git folder.
set -euo pipefail
src=${1:?usage: bash bench/build_sass_tools.sh <nvcachetools source or git folder>}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -f "$src/nvcachedec.c" ]; then
  cp "$src"/*.c "$src"/*.h "$work/"
else
  git --git-dir "$src" archive HEAD | tar x -C "$work"
fi
mkdir -p .sass
cc -O2 -static -o .sass/nvcachedec "$work/nvcachedec.c" "$work/readfile.c" -lzstd
git --git-dir "$src" log -1 --format='nvcachetools %H %cs' 2>/dev/null > .sass/VERSION ||
  echo "nvcachetools from $src" > .sass/VERSION
ls -la .sass

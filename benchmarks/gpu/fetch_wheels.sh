#!/usr/bin/env bash
# Fetch the wheels listed in benchmarks/gpu/wheels.txt into <repo>/.whl for a cp312 manylinux x86-64 machine
# (the GPU benchmark machine has no network). Run here, with network; then carry .whl to the GPU machine.
#   benchmarks/gpu/fetch_wheels.sh [PYTHON]      (PYTHON: the interpreter whose pip downloads; default python3)
# A package that is published only as an sdist (antlr4-python3-runtime 4.9.3 is pure Python) is built into a
# wheel locally with `pip wheel`; the result is platform-independent (py3-none-any).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="${1:-python3}"
dest="$repo/.whl"
mkdir -p "$dest"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
while read -r spec; do
  spec="${spec%%#*}"; spec="${spec// /}"
  [ -z "$spec" ] && continue
  name="${spec%%==*}"; norm="$(echo "$name" | tr 'A-Z-' 'a-z_')"
  if ls "$dest" | tr 'A-Z-' 'a-z_' | grep -q "^${norm}-${spec##*==}-"; then
    echo "have $spec"; continue
  fi
  if ! "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
       "${platforms[@]}" -d "$dest" "$spec" 2>/dev/null; then
    echo "no binary wheel for $spec: building a pure-Python wheel from the sdist"
    "$py" -m pip wheel -q --no-deps --no-binary=:all: -w "$dest" "$spec"
  fi
  echo "got $spec"
done < "$here/wheels.txt"
du -sh "$dest"

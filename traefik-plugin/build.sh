#!/usr/bin/env bash
# Builds Barbican's Traefik plugin into dist/traefik/plugins-local/src/barbican/
# (plugin.wasm + .traefik.yml): copy dist/traefik/plugins-local next to Traefik's working
# directory and set experimental.localPlugins.barbican.moduleName: barbican.
#
# Traefik 3.7's wazero (1.8) mishandles memory.copy/memory.fill of a few KiB and more (traps or
# half-written memory, DESIGN §5), and Rust's std contains them whatever the target features
# say. binaryen >= 132 lowers them to plain loops; this script fails if any survive.
#
# Env: WASM_OPT (default .build/node_modules/.bin/wasm-opt, from `make deps-node`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
target=wasm32-wasip1
wasm_opt="${WASM_OPT:-$root/.build/node_modules/.bin/wasm-opt}"
out="$root/dist/traefik/plugins-local/src/barbican"
built="${CARGO_TARGET_DIR:-$here/target}/$target/release/barbican-traefik.wasm"

if [[ ! -x "$wasm_opt" ]]; then
  echo "build.sh: no wasm-opt at $wasm_opt (binaryen >= 132: make deps-node)" >&2
  exit 1
fi

cargo build --release --locked --target "$target" --manifest-path "$here/Cargo.toml"

mkdir -p "$out"
# The features Rust's wasm32-wasip1 output uses must be enabled for binaryen to read it; the
# lowering pass then turns bulk memory off, so -Oz cannot bring memory.copy/fill back.
"$wasm_opt" --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-mutable-globals --enable-multivalue --enable-reference-types \
  --llvm-memory-copy-fill-lowering -Oz --strip-debug \
  "$built" -o "$out/plugin.wasm.tmp"

if "$wasm_opt" --all-features --print "$out/plugin.wasm.tmp" 2>/dev/null |
  grep -qE '\(memory\.(copy|fill)\b'; then
  rm -f "$out/plugin.wasm.tmp"
  echo "build.sh: memory.copy/memory.fill survived the lowering; Traefik would corrupt memory" >&2
  exit 1
fi
mv "$out/plugin.wasm.tmp" "$out/plugin.wasm"
cp "$here/.traefik.yml" "$out/.traefik.yml"

echo "$out/plugin.wasm: $(stat -c %s "$out/plugin.wasm") bytes (before wasm-opt: $(stat -c %s "$built"))"

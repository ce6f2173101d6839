#!/usr/bin/env bash
# Builds the web device (issue 30, docs/web.md) into target/web/ (or the directory given):
# index.html, app.js, style.css and pkg/ (the WebAssembly module and its wasm-bindgen glue),
# which `treecast serve --app target/web` serves at /app/.
#
# Needs rustup's wasm32-unknown-unknown target and wasm-bindgen-cli of the version
# Cargo.lock pins (`cargo install wasm-bindgen-cli --version V`, about 11 minutes). No wasm-opt:
# Debian's 108 breaks this wasm-bindgen's output.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "build-web: wasm-bindgen-cli $want is needed (found: ${have:-none}):" \
       "cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi
target=${CARGO_TARGET_DIR:-target}
out=${1:-$target/web}
cargo build --locked --release --target wasm32-unknown-unknown -p treecast-web
rm -rf "$out.new"
mkdir -p "$out.new"
wasm-bindgen --target web --no-typescript --out-dir "$out.new/pkg" \
  "$target/wasm32-unknown-unknown/release/treecast_web.wasm"
cp web/static/index.html web/static/app.js web/static/style.css "$out.new/"
rm -rf "$out"
mv "$out.new" "$out"
echo "build-web: $out ($(gzip -9c "$out/pkg/treecast_web_bg.wasm" | wc -c) bytes of WebAssembly gzipped)"

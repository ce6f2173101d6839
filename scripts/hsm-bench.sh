#!/usr/bin/env bash
# A license server's signature in a SoftHSM2 token against in memory (issue 29, item 4): makes a
# throwaway token and an HSM key file, then runs `cargo bench --bench hsm` on both.
# Needs Debian's softhsm2. Usage: scripts/hsm-bench.sh
set -euo pipefail
module=/usr/lib/softhsm/libsofthsm2.so
[ -e "$module" ] || { echo "SoftHSM2 is not installed (apt-get install softhsm2)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir" >"$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf"
softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 >/dev/null
printf '1234\n' >"$dir/pin"
chmod 600 "$dir/pin"
cargo build --release --locked -q
target/release/treecast keygen --servers 1 --out "$dir/keys" \
  --hsm "pkcs11:token=bench;object=bench?module-path=$module&pin-source=file:$dir/pin"
TREECAST_BENCH_HSM_KEYS="$dir/keys" cargo bench --locked --bench hsm

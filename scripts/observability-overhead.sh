#!/usr/bin/env bash
# The cost of logging and metrics (issue 28): `treecast serve` on SQLite driven by
# `treecast simulate --server` (the load test), once with JSON access logs and metrics on and once
# with both off, alternately, back to back, PAIRS times; prints each run's request rate (HTTP
# requests over the load test's wall time) and the median ratio. Usage:
#   scripts/observability-overhead.sh [USERS] [PAIRS]
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-5000}
pairs=${2:-5}
bin=target/release/treecast
[ -x "$bin" ] || cargo build --release --locked
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" keygen --out "$work/keys" >/dev/null

run() { # $1: on|off; prints the request rate
  local mode=$1 dir
  dir=$(mktemp -d -p "$work")
  local flags=(--log-format json --log-level info)
  if [ "$mode" = off ]; then flags=(--log-level off --no-metrics); fi
  "$bin" serve --keys "$work/keys" --store "sqlite:$dir/registry.sqlite" --admin-token "$dir/token" \
    --content-dir "$dir/contents" --listen 127.0.0.1:0 --auth-failures-per-address 0 \
    --auth-failures-per-user 0 "${flags[@]}" >"$dir/out" 2>"$dir/log" &
  local pid=$!
  for _ in $(seq 100); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.05; done
  local url
  url=$(grep -o 'http://[0-9.:]*' "$dir/out" | head -1)
  "$bin" simulate --server "$url" --admin-token "$dir/token" --users "$users" \
    --report "$dir/report.json" >/dev/null
  kill -TERM "$pid"; wait "$pid" || true
  python3 - "$dir/report.json" "$dir/log" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
requests = sum(o["count"] for o in r["latency"].values())
seconds = sum(p["seconds"] for name, p in r["phases"].items() if name != "3_play")
lines = sum(1 for _ in open(sys.argv[2]))
print(f"{requests / seconds:.0f} {requests} {lines}")
PY
}

on=(); off=()
for i in $(seq "$pairs"); do
  read -r rate_on requests lines_on < <(run on)
  read -r rate_off _ lines_off < <(run off)
  echo "pair $i: on $rate_on req/s ($lines_on log lines), off $rate_off req/s ($lines_off log lines), $requests requests"
  on+=("$rate_on"); off+=("$rate_off")
done
python3 - "${on[*]}" "${off[*]}" <<'PY'
import statistics, sys
on = [float(x) for x in sys.argv[1].split()]
off = [float(x) for x in sys.argv[2].split()]
ratios = [a / b for a, b in zip(on, off)]
print(f"median on {statistics.median(on):.0f} req/s, off {statistics.median(off):.0f} req/s, "
      f"median ratio on/off {statistics.median(ratios):.3f} (pairs: {', '.join(f'{r:.3f}' for r in ratios)})")
PY

#!/usr/bin/env bash
# The first-frame time of a 10 s video in headless Chromium (issue 30, docs/performance.md):
# the clear fragmented MP4 and the same file through `treecast cenc encrypt`, played by the page
# of tests/browser/eme.html (MSE and EME with ClearKey), alternately, ROUNDS times each; prints
# each time (ms from navigation to the first frame decoded) and the medians.
# Needs ffmpeg, chromium and python3. Usage: scripts/cenc-first-frame.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-7}"
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release --quiet --bin treecast
ffmpeg -v error -f lavfi -i testsrc=duration=10:size=640x360:rate=25 \
  -f lavfi -i sine=frequency=440:duration=10 \
  -c:v libx264 -profile:v baseline -pix_fmt yuv420p -g 25 -c:a aac -b:a 128k \
  -movflags frag_keyframe+empty_moov+default_base_moof -f mp4 "$work/clear.mp4"
key=3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c
kid=a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5
(umask 077 && echo "$key" > "$work/content.key")
target/release/treecast cenc encrypt --key-file "$work/content.key" --kid "$kid" \
  --in "$work/clear.mp4" --out "$work/enc.mp4" >/dev/null
cp tests/browser/eme.html "$work/index.html"
cat > "$work/serve.py" <<'PY'
import http.server, os, sys
os.chdir(sys.argv[1])
class H(http.server.SimpleHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get('content-length', 0))
        print(self.rfile.read(n).decode(), flush=True)
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[2])), H).serve_forever()
PY
port=$((20000 + RANDOM % 20000))
python3 "$work/serve.py" "$work" "$port" > "$work/log" &
server=$!
sleep 1
measure() { # media query -> first-frame ms
  local before
  before=$(wc -l < "$work/log")
  timeout 20 chromium --headless=new --no-sandbox --disable-gpu --no-first-run --mute-audio \
    --autoplay-policy=no-user-gesture-required --user-data-dir="$work/profile-$RANDOM" \
    "http://127.0.0.1:$port/index.html?media=/$1$2" >/dev/null 2>&1 &
  local browser=$!
  for _ in $(seq 1 150); do
    if tail -n +$((before + 1)) "$work/log" | grep -aq '"frame"'; then break; fi
    sleep 0.1
  done
  kill "$browser" 2>/dev/null || true
  wait "$browser" 2>/dev/null || true
  tail -n +$((before + 1)) "$work/log" | grep -ao '"event":"frame","ms":[0-9.]*' | head -1 |
    sed 's/.*://'
}
clear=() enc=()
for _ in $(seq 1 "$rounds"); do
  clear+=("$(measure clear.mp4 '')")
  enc+=("$(measure enc.mp4 "&key=$key&kid=$kid")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "clear (ms): ${clear[*]}"
echo "cenc  (ms): ${enc[*]}"
echo "median first frame: clear $(median "${clear[@]}") ms, cenc $(median "${enc[@]}") ms"

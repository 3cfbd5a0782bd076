#!/usr/bin/env bash
# From a fresh clone to the first delivery at a local receiver, on a machine without
# Redis: a clean clone in a temp directory, a PATH without redis-server, nothing asked of
# 127.0.0.1:6379. Times `./scripts/run` (virtualenv creation and install included) until
# the receiver gets the signed webhook the sample's CRM route sends for one Calendly
# booking. Then times the embedded store's first start on an empty directory, and its
# start on existing data.
#
#   bash bench/first_delivery.sh [REPO]      (default: this checkout's repository)
set -euo pipefail
repo="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
work="$(mktemp -d /tmp/hub-first-XXXX)"
trap 'kill "${run_pid:-}" "${sink_pid:-}" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

bare="$work/bin"
mkdir "$bare"
IFS=: read -ra path_dirs <<< "$PATH"
for dir in "${path_dirs[@]}"; do
  [ -d "$dir" ] || continue
  for program in "$dir"/*; do
    name="${program##*/}"
    case "$name" in redis-server|valkey-server|redis-sentinel) continue ;; esac
    if [ -x "$program" ] && [ ! -e "$bare/$name" ]; then ln -s "$program" "$bare/$name"; fi
  done
done
export PATH="$bare"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hub_port="$(free_port)"
sink_port="$(free_port)"

# The local receiver: the first POST's arrival time, then it exits.
python3 - "$sink_port" > "$work/arrived" <<'PY' &
import http.server, sys, time
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()
        print(time.time(), flush=True)
        raise SystemExit
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).handle_request()
PY
sink_pid=$!

start="$(python3 -c 'import time; print(time.time())')"
git clone --quiet "$repo" "$work/hub"
cd "$work/hub"
HUB_PORT="$hub_port" CRM_WEBHOOK_URL="http://127.0.0.1:$sink_port/hub-events" \
  INXMAIL_API_URL="http://127.0.0.1:9/" AUVIOUS_URL="http://127.0.0.1:9" \
  ./scripts/run > "$work/run.log" 2>&1 &
run_pid=$!
until python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$hub_port/readyz', timeout=1)" 2>/dev/null; do
  kill -0 "$run_pid" 2>/dev/null || { cat "$work/run.log"; exit 1; }
  sleep 0.1
done
ready="$(python3 -c 'import time; print(time.time())')"
python3 - "$hub_port" <<'PY'
import hashlib, hmac, sys, time, urllib.request
body = open("tests/fixtures/calendly/invitee_created.json", "rb").read()
t = str(int(time.time()))
sig = hmac.new(b"demo-signing-key", t.encode() + b"." + body, hashlib.sha256).hexdigest()
request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/hooks/calendly", data=body,
    headers={"Content-Type": "application/json", "Calendly-Webhook-Signature": f"t={t},v1={sig}"},
)
print("intake:", urllib.request.urlopen(request, timeout=5).status)
PY
wait "$sink_pid"
arrived="$(cat "$work/arrived")"
python3 -c "print(f'fresh clone to hub ready: {$ready - $start:.1f} s; to the first delivery: {$arrived - $start:.1f} s')"

# The embedded store alone: first start on an empty directory, then on existing data.
.venv/bin/python - <<'PY'
import tempfile, time
from pathlib import Path
from hub.store.embedded import EmbeddedServer
path = Path(tempfile.mkdtemp(prefix="hub-")) / "store"
for label in ("first start, empty directory", "start on existing data"):
    began = time.perf_counter()
    server = EmbeddedServer(path).attach()
    started = time.perf_counter() - began
    server.detach()
    print(f"embedded store, {label}: {started * 1000:.0f} ms (stop {(time.perf_counter() - began - started) * 1000:.0f} ms)")
PY

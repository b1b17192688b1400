#!/usr/bin/env bash
# Runs schemathesis (PyPI) with every check against a live `stowage serve` (embedded default, in
# a temporary directory) using the service's own OpenAPI document; exits non-zero on any failure
# or any server error Stowage logs. scripts/test.sh runs it after the Rust suite. Its settings,
# and why each exists: scripts/schemathesis.toml.
#
#   scripts/schemathesis.sh [EXTRA SCHEMATHESIS ARGS]             e.g. -n 200
#   SEED=7 scripts/schemathesis.sh                                 another fixed seed (default 1)
#   RESULT_FILE=docs/schemathesis-result.txt scripts/schemathesis.sh   also keep the report
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=$ROOT/.schemathesis-venv
if [ ! -x "$VENV/bin/schemathesis" ]; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q 'schemathesis>=4.3,<5'
fi
cargo build -q --locked --bin stowage
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/stowage
DIR=$(mktemp -d /tmp/stowage-schemathesis.XXXXXX)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
(cd "$DIR" && STOWAGE_LISTEN=127.0.0.1:$PORT STOWAGE_RATE_LIMIT=0 RUST_LOG=warn \
  exec "$BIN" serve >"$DIR/out.log" 2>"$DIR/err.log") &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 1 300); do grep -q "listening" "$DIR/out.log" 2>/dev/null && break; sleep 0.1; done
KEY=$(grep -o 'stw_[0-9a-f_]*' "$DIR/out.log" | head -1 || true)
[ -n "$KEY" ] || { echo "schemathesis: stowage serve did not start:" >&2; cat "$DIR/err.log" >&2; exit 1; }
BASE=http://127.0.0.1:$PORT

echo "== schemathesis (every check) against stowage serve at $BASE"
set +e
(cd "$DIR" && "$VENV/bin/schemathesis" --config-file "$ROOT/scripts/schemathesis.toml" \
  run "$BASE/openapi.json" \
  --url "$BASE" \
  -H "X-API-Key: $KEY" -H "X-ATS-Client-ID: default" \
  --max-examples "${MAX_EXAMPLES:-50}" \
  --seed "${SEED:-1}" \
  "$@") >"$DIR/result.txt" 2>&1
status=$?
set -e
sed 's/\x1b\[[0-9;]*m//g' "$DIR/result.txt" >"$DIR/clean.txt"
errors=$(grep -c 'request failed' "$DIR/err.log" || true)
if [ -n "${RESULT_FILE:-}" ]; then
  {
    echo "# schemathesis against stowage serve (embedded default), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# $("$VENV/bin/schemathesis" --version 2>/dev/null | head -1); exit status $status"
    echo "# server errors logged by Stowage: $errors"
    cat "$DIR/clean.txt"
  } >"$RESULT_FILE"
fi
if [ "$status" -ne 0 ] || [ "$errors" -ne 0 ]; then
  cat "$DIR/clean.txt"
  echo "schemathesis: failures (exit $status), server errors logged: $errors" >&2
  exit 1
fi
grep -E "generated|passed|failed" "$DIR/clean.txt" | tail -2

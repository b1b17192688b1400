#!/usr/bin/env bash
# Runs schemathesis (PyPI) against a live `stowage serve` (embedded default, in a temporary
# directory) using the service's own OpenAPI document, checking that no generated request gets a
# server error. Not part of CI. Writes docs/schemathesis-result.txt.
#
#   docs/schemathesis.sh [EXTRA SCHEMATHESIS ARGS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=$ROOT/.schemathesis-venv
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q schemathesis
fi
cargo build -q --bin stowage
DIR=$(mktemp -d /tmp/stowage-schemathesis.XXXXXX)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
(cd "$DIR" && STOWAGE_LISTEN=127.0.0.1:$PORT STOWAGE_RATE_LIMIT=0 RUST_LOG=warn \
  "$ROOT/target/debug/stowage" serve >"$DIR/out.log" 2>"$DIR/err.log") &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do grep -q "listening" "$DIR/out.log" 2>/dev/null && break; sleep 0.1; done
KEY=$(grep -o 'stw_[0-9a-f_]*' "$DIR/out.log" | head -1)
BASE=http://127.0.0.1:$PORT

set +e
"$VENV/bin/schemathesis" run "$BASE/openapi.json" \
  --url "$BASE" \
  -H "X-API-Key: $KEY" -H "X-ATS-Client-ID: default" \
  --checks not_a_server_error \
  --max-examples "${MAX_EXAMPLES:-50}" \
  "$@" 2>&1 | tee "$DIR/result.txt"
status=${PIPESTATUS[0]}
set -e
{
  echo "# schemathesis against stowage serve (embedded default), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# $("$VENV/bin/schemathesis" --version 2>/dev/null | head -1); exit status $status"
  echo "# server errors logged by Stowage: $(grep -c 'request failed' "$DIR/err.log" || true)"
  sed 's/\x1b\[[0-9;]*m//g' "$DIR/result.txt"
} >docs/schemathesis-result.txt
exit "$status"

#!/usr/bin/env bash
# Generates a Python client with openapi-python-client (PyPI) from the live /openapi.json of a
# `stowage serve` (embedded default, in a temporary directory) and runs the whole flow with it
# (scripts/typed-client-flow.py): upload, webhook, events, text, erasure, direct upload, upload
# token. scripts/test.sh runs it after the Rust suite.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=$ROOT/.typed-client-venv
if [ ! -x "$VENV/bin/openapi-python-client" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'openapi-python-client>=0.29,<0.30'
fi
cargo build -q --locked --bin stowage
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/stowage
DIR=$(mktemp -d /tmp/stowage-typed-client.XXXXXX)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
(cd "$DIR" && STOWAGE_LISTEN=127.0.0.1:$PORT RUST_LOG=warn exec "$BIN" serve >"$DIR/out.log" 2>"$DIR/err.log") &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 1 300); do grep -q "listening" "$DIR/out.log" 2>/dev/null && break; sleep 0.1; done
KEY=$(grep -o 'stw_[0-9a-f_]*' "$DIR/out.log" | head -1 || true)
[ -n "$KEY" ] || { echo "typed-client: stowage serve did not start:" >&2; cat "$DIR/err.log" >&2; exit 1; }
BASE=http://127.0.0.1:$PORT
curl -sf "$BASE/openapi.json" -o "$DIR/openapi.json"
(cd "$DIR" && "$VENV/bin/openapi-python-client" generate --path openapi.json --meta none \
  --output-path stowage_client >"$DIR/generate.log" 2>&1) \
  || { cat "$DIR/generate.log" >&2; exit 1; }
PYTHONPATH="$DIR" "$VENV/bin/python" "$ROOT/scripts/typed-client-flow.py" "$BASE" "$KEY"

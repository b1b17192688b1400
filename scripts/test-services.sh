#!/usr/bin/env bash
# Starts a throwaway PostgreSQL and a moto S3 server on 127.0.0.1 (free ports), runs the command
# given as arguments with STOWAGE_TEST_PG_URL and STOWAGE_TEST_S3_ENDPOINT pointing at them, and
# stops both when the command ends, whatever its outcome. Installs what is missing.
#
#   scripts/test-services.sh cargo test
#   S3_SERVER=localstack scripts/test-services.sh cargo test    # LocalStack host mode instead of moto
set -euo pipefail

PG_VERSION=${PG_VERSION:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_VERSION/bin}

log() { echo "test-services: $*" >&2; }

free_port() {
  python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

ensure_postgres() {
  [ -x "$PGBIN/initdb" ] && return
  log "installing postgresql-$PG_VERSION"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "postgresql-$PG_VERSION" >/dev/null
}

ensure_moto() {
  python3 -c 'import moto.server' 2>/dev/null && return
  log "installing moto[server]"
  python3 -m pip install -q 'moto[server]>=5,<6'
}

# The docs' examples are run with curl (shell), python3 and node (signature checks); the browser
# pattern with the distribution's headless Chromium; real deliveries are verified with the
# Standard Webhooks libraries from PyPI and npm, unchanged.
ensure_example_tools() {
  local missing=()
  command -v curl >/dev/null || missing+=(curl)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  python3 -c 'import standardwebhooks' 2>/dev/null || {
    log "installing standardwebhooks (PyPI)"
    python3 -m pip install -q 'standardwebhooks>=1.3,<2'
  }
  [ -d "$NODE_TOOLS/node_modules/standardwebhooks" ] || {
    log "installing standardwebhooks (npm)"
    mkdir -p "$NODE_TOOLS"
    npm install -s --prefix "$NODE_TOOLS" --no-audit --no-fund 'standardwebhooks@^1.3' >/dev/null
  }
}
NODE_TOOLS=${NODE_TOOLS:-$(cd "$(dirname "$0")/.." && pwd)/target/node-tools}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

PGBASE=""
S3_PID=""
CLAMD_PID=""
CLAMBASE=""
S3_SERVER=${S3_SERVER:-moto}
cleanup() {
  set +e
  if [ -n "$S3_PID" ]; then
    kill "$S3_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$S3_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$S3_PID" 2>/dev/null
  fi
  if [ -n "$CLAMD_PID" ]; then
    kill "$CLAMD_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$CLAMD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$CLAMD_PID" 2>/dev/null
  fi
  [ -n "$CLAMBASE" ] && rm -rf "$CLAMBASE"
  if [ -n "$PGBASE" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$PGBASE/data" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$PGBASE"
  fi
}
trap cleanup EXIT INT TERM

# clamd (Debian's clamav-daemon) with a signature database the tests build offline: the EICAR
# test file, and whatever a test adds (then RELOAD). No signature is ever downloaded.
ensure_clamd() {
  command -v clamd >/dev/null && return
  log "installing clamav-daemon"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clamav-daemon >/dev/null
}

# OCR (STOWAGE_OCR): Debian's Tesseract with its English data, and poppler's pdftoppm, which
# also renders the tests' scanned pages.
ensure_ocr() {
  command -v tesseract >/dev/null && command -v pdftoppm >/dev/null && return
  log "installing tesseract-ocr and poppler-utils"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq tesseract-ocr tesseract-ocr-eng \
    poppler-utils >/dev/null
}

ensure_postgres
ensure_example_tools
ensure_clamd
ensure_ocr
[ "$S3_SERVER" = moto ] && ensure_moto

PGPORT=$(free_port)
PGBASE=$(mktemp -d /tmp/stowage-pg.XXXXXX)
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PGBASE"
as_pg "$PGBIN/initdb" -D "$PGBASE/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
  --no-sync --no-instructions >/dev/null
# One role must log in with a password (the test of a wrong password); every other is trusted.
sed -i '1i host all stowage_password 127.0.0.1/32 scram-sha-256' "$PGBASE/data/pg_hba.conf"
as_pg "$PGBIN/pg_ctl" -D "$PGBASE/data" -l "$PGBASE/server.log" -w -t 30 \
  -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGBASE -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null
log "PostgreSQL on 127.0.0.1:$PGPORT"

S3PORT=$(free_port)
wait_for() { # URL [python expression on the body that must hold]
  for _ in $(seq 1 600); do
    if python3 - "$1" "${2:-True}" <<'PYEOF' 2>/dev/null; then return 0; fi
import json, sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=1).read()
sys.exit(0 if eval(sys.argv[2]) else 1)
PYEOF
    kill -0 "$S3_PID" 2>/dev/null || { log "$S3_SERVER did not start:"; tail -50 "$PGBASE/s3.log" >&2; exit 1; }
    sleep 0.1
  done
  log "$S3_SERVER did not become ready"; exit 1
}
case "$S3_SERVER" in
  moto)
    python3 -m moto.server -H 127.0.0.1 -p "$S3PORT" >"$PGBASE/s3.log" 2>&1 &
    S3_PID=$!
    wait_for "http://127.0.0.1:$S3PORT/"
    ;;
  localstack)
    localstack/host.sh "$S3PORT" "$PGBASE/localstack" >"$PGBASE/s3.log" 2>&1 &
    S3_PID=$!
    wait_for "http://127.0.0.1:$S3PORT/_localstack/init/ready" 'json.loads(body).get("completed") is True'
    ;;
  *) log "S3_SERVER must be moto or localstack"; exit 1 ;;
esac
log "$S3_SERVER S3 on 127.0.0.1:$S3PORT"

CLAMPORT=$(free_port)
CLAMBASE=$(mktemp -d /tmp/stowage-clamd.XXXXXX)
chmod 755 "$CLAMBASE"
mkdir -p "$CLAMBASE/db"
# EICAR, as hex (assembled here so that no scanner of this repository trips over the script).
EICAR_HEX=$(printf '%s%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$' 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' | od -An -tx1 | tr -d ' \n')
echo "Stowage.Test.EICAR:0:*:$EICAR_HEX" >"$CLAMBASE/db/stowage-test.ndb"
{
  echo "Foreground yes"
  echo "DatabaseDirectory $CLAMBASE/db"
  echo "TCPSocket $CLAMPORT"
  echo "TCPAddr 127.0.0.1"
  echo "LogFile $CLAMBASE/clamd.log"
  echo "StreamMaxLength 200M"
  echo "MaxScanSize 400M"
  echo "MaxFileSize 200M"
  echo "SelfCheck 3600"
  [ "$(id -u)" -eq 0 ] && echo "User root"
} >"$CLAMBASE/clamd.conf"
clamd -c "$CLAMBASE/clamd.conf" >"$CLAMBASE/out.log" 2>&1 &
CLAMD_PID=$!
for _ in $(seq 1 300); do
  python3 - "$CLAMPORT" <<'PYEOF' 2>/dev/null && break
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"zPING\0")
sys.exit(0 if s.recv(16).startswith(b"PONG") else 1)
PYEOF
  kill -0 "$CLAMD_PID" 2>/dev/null || { log "clamd did not start:"; tail -20 "$CLAMBASE/out.log" >&2; exit 1; }
  sleep 0.1
done
log "clamd on 127.0.0.1:$CLAMPORT"
export STOWAGE_TEST_CLAMD="tcp://127.0.0.1:$CLAMPORT"
export STOWAGE_TEST_CLAMD_DB="$CLAMBASE/db"

export STOWAGE_TEST_PG_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
export STOWAGE_TEST_S3_ENDPOINT="http://127.0.0.1:$S3PORT"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export NODE_PATH="$NODE_TOOLS/node_modules"

"$@"

#!/usr/bin/env bash
# LocalStack (S3 only) in host mode, without Docker, on 127.0.0.1.
#
#   localstack/host.sh PORT DATA_DIR     start in the foreground (Ctrl-C stops it)
#
# Installs LocalStack with its pinned requirements (localstack/requirements.txt) into
# .localstack-venv on first use; needs Python >= 3.12 (pyenv's 3.13 is used when present, or set
# LOCALSTACK_PYTHON). It starts empty: `stowage storage init` (or the first `stowage serve`)
# creates Stowage's buckets and the staging lifecycle rule.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
port=${1:?usage: localstack/host.sh PORT DATA_DIR}
data=${2:?usage: localstack/host.sh PORT DATA_DIR}
venv=${LOCALSTACK_VENV:-$root/.localstack-venv}

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import localstack' 2>/dev/null; then
  py=${LOCALSTACK_PYTHON:-}
  if [ -z "$py" ]; then
    for candidate in "$(pyenv root 2>/dev/null)/versions/3.13.0/bin/python3" python3.13 python3.12; do
      if command -v "$candidate" >/dev/null 2>&1 || [ -x "$candidate" ]; then py=$candidate; break; fi
    done
  fi
  [ -n "$py" ] || { echo "localstack/host.sh: needs Python >= 3.12 (set LOCALSTACK_PYTHON)" >&2; exit 1; }
  echo "localstack/host.sh: installing LocalStack into $venv" >&2
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi

mkdir -p "$data"
export OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$data" SERVICES=s3 EAGER_SERVICE_LOADING=1 \
  GATEWAY_SERVER=hypercorn DNS_ADDRESS=0 GATEWAY_LISTEN="127.0.0.1:$port" \
  LOCALSTACK_HOST="localhost.localstack.cloud:$port" DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1
exec "$venv/bin/python" -m localstack.runtime.main

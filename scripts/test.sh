#!/usr/bin/env bash
# The whole test suite: unit tests, and the integration tests on both backend pairs
# (SQLite + local directory; PostgreSQL + an S3 server), starting PostgreSQL and moto itself;
# then, for a full run (no test filter given), schemathesis with every check against the
# OpenAPI document of a live `stowage serve`, and the whole flow through a Python client
# generated from that document (openapi-python-client).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-services.sh cargo test --locked "$@"
if [ $# -eq 0 ]; then
  scripts/schemathesis.sh
  scripts/typed-client.sh
fi

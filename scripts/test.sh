#!/usr/bin/env bash
# The whole test suite: unit tests, and the integration tests on both backend pairs
# (SQLite + local directory; PostgreSQL + an S3 server), starting PostgreSQL and moto itself.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/test-services.sh cargo test --locked "$@"

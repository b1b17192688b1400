#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time (default 60 s each; FUZZ_SECONDS to change).
# Not part of CI. Needs cargo-fuzz (installed into bench/.tools on first use); uses
# RUSTC_BOOTSTRAP=1 because this machine has only a stable toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=$(pwd)/bench/.tools
if [ ! -x "$TOOLS/bin/cargo-fuzz" ]; then
  cargo install cargo-fuzz --locked --root "$TOOLS"
fi
export PATH=$TOOLS/bin:$PATH RUSTC_BOOTSTRAP=1
SECONDS_EACH=${FUZZ_SECONDS:-60}
for target in sniff webhook_payload; do
  echo "== fuzzing $target for ${SECONDS_EACH}s"
  cargo fuzz run "$target" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 2>&1 | tail -5
done

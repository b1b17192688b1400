#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/) for a bounded time (FUZZ_SECONDS, default 60 s each) and
# writes the last lines of each run to docs/fuzz-result.txt (`scripts/fuzz.sh text_pdf` runs one).
# Seeds: documents put in fuzz/seeds/<target>/ (not committed; e.g. PDFs and Word files from the
# corpora bench/text-corpus.sh downloads) are read as an extra corpus; without them the text
# targets reach little beyond the container formats' headers. Not part of CI. Needs cargo-fuzz
# (installed into bench/.tools on first use); uses RUSTC_BOOTSTRAP=1 because this machine has
# only a stable toolchain. A crash leaves its input in fuzz/artifacts/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=$(pwd)/bench/.tools
if [ ! -x "$TOOLS/bin/cargo-fuzz" ]; then
  cargo install cargo-fuzz --locked --root "$TOOLS"
fi
export PATH=$TOOLS/bin:$PATH RUSTC_BOOTSTRAP=1
SECONDS_EACH=${FUZZ_SECONDS:-60}
OUT=docs/fuzz-result.txt
echo "# cargo fuzz, ${SECONDS_EACH}s per target, $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$OUT"
status=0
TARGETS=${*:-sniff webhook_payload text_pdf text_docx text_doc text_rtf text_odt text_normalize}
for target in $TARGETS; do
  echo "== fuzzing $target for ${SECONDS_EACH}s" | tee -a "$OUT"
  log=$(mktemp)
  seeds=()
  [ -d "fuzz/seeds/$target" ] && seeds=("seeds/$target")
  if (cd fuzz && cargo fuzz run "$target" "${seeds[@]}" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=20) >"$log" 2>&1; then
    grep -E "^(Done|#[0-9]+.*(DONE|cov:))" "$log" | tail -2 | tee -a "$OUT"
  else
    status=1
    echo "CRASH — see fuzz/artifacts/$target" | tee -a "$OUT"
    grep -vE "^\s+[0-9]+:|^\s+at " "$log" | tail -30 | tee -a "$OUT"
  fi
  rm -f "$log"
done
exit "$status"

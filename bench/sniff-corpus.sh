#!/usr/bin/env bash
# Runs Stowage's content checks over real PDFs nobody here wrote (the documentation PDFs of two
# Debian TeX Live packages, downloaded with apt-get, not committed) and writes what they
# refuse to bench/sniff-corpus.txt. A refusal here is a false positive of a content check.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d /tmp/stowage-corpus.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && apt-get download texlive-latex-base-doc texlive-latex-recommended-doc >/dev/null 2>&1) || {
  apt-get update -qq >/dev/null && (cd "$WORK" && apt-get download texlive-latex-base-doc texlive-latex-recommended-doc >/dev/null)
}
for deb in "$WORK"/*.deb; do dpkg-deb -x "$deb" "$WORK/x"; done
cargo build --release --example sniff_corpus >/dev/null 2>&1
{
  echo "# Content checks on real documents ($(date -u +%Y-%m-%d))"
  echo "# corpus: PDFs of texlive-latex-base-doc and texlive-latex-recommended-doc (Debian)"
  find "$WORK/x" -name '*.pdf' -print0 | xargs -0 target/release/examples/sniff_corpus | sed "s|$WORK/x||"
} | tee bench/sniff-corpus.txt

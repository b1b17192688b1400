#!/usr/bin/env bash
# Measures OCR (STOWAGE_OCR) on scanned versions of real documents nobody here wrote, and
# writes bench/ocr-corpus.txt. The documents are the PDFs of two Debian TeX Live documentation
# packages (apt-get download, not committed): one body page of every 8th PDF (page 2, or 1 when
# it has one page) is rendered by pdftoppm in grey at SCAN_DPI (default 200, a desk scanner's
# setting) and put back alone into an image-only PDF — a scan — which `stowage extract --ocr`
# reads as the service does (isolated child, its limits). Reference: pdftotext on the same
# page of the original. Reports word recall, extra words, seconds per page.
# Needs: poppler-utils, tesseract-ocr (apt-get install poppler-utils tesseract-ocr).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in pdftotext pdftoppm pdfinfo tesseract; do
  command -v "$tool" >/dev/null || { echo "missing $tool (see the head of $0)" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/stowage-ocr-corpus.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && apt-get download texlive-latex-base-doc texlive-latex-recommended-doc >/dev/null 2>&1) || {
  apt-get update -qq >/dev/null && (cd "$WORK" && apt-get download texlive-latex-base-doc texlive-latex-recommended-doc >/dev/null)
}
for deb in "$WORK"/*.deb; do dpkg-deb -x "$deb" "$WORK/pdf"; done
cargo build --release --bin stowage >/dev/null 2>&1
{
  echo "# OCR of scanned pages ($(date -u +%Y-%m-%d), $(nproc) cores, $(tesseract --version 2>&1 | head -1), language eng)"
  echo "# corpus: one body page of every 8th PDF of texlive-latex-base-doc and texlive-latex-recommended-doc,"
  echo "#   rendered by pdftoppm in grey at ${SCAN_DPI:-200} dpi and put back as an image-only PDF (a scan);"
  echo "#   read by \`stowage extract --kind pdf --ocr\` (the isolated child: pdftoppm at 300 dpi, Tesseract, one thread)"
  echo "# reference: pdftotext on the same page of the original"
  find "$WORK/pdf" -name '*.pdf' -print0 | sort -z |
    xargs -0 python3 bench/ocr_corpus.py target/release/stowage "$WORK/scans" "${SCAN_DPI:-200}" | sed "s|$WORK/||"
} | tee bench/ocr-corpus.txt

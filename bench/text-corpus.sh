#!/usr/bin/env bash
# Measures text extraction on real PDF and Word documents nobody here wrote, downloaded now and
# not committed, against reference extractors, and writes bench/text-corpus.txt:
#   PDF  — the documentation PDFs of two Debian TeX Live packages (apt-get download) and the
#          test PDFs of pypdf, tabula-py and ocrmypdf (PyPI sdists: forms, tables, CJK, scans),
#          reference poppler's pdftotext;
#   DOCX — the test documents of python-docx and pydocx (PyPI sdists) and mammoth (npm),
#          reference python-docx (paragraphs and tables in document order);
#   DOC  — the same DOCX saved as Word 97-2003 by LibreOffice, reference antiword;
#   ODT  — the test documents of odfpy (PyPI sdist) and the DOCX saved as ODT by LibreOffice;
#   RTF  — the DOCX and odfpy's documents saved as RTF by LibreOffice (no RTF test corpus ships
#          in a package: odfpy, striprtf, rtfparse, rtfde, rtf.js and rtf-to-html hold none);
#          reference for both: LibreOffice's own text export of each file.
# Needs: poppler-utils, antiword, libreoffice-writer (apt-get install poppler-utils antiword
# libreoffice-writer-nogui), python-docx (pip install python-docx), npm.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in pdftotext pdfinfo antiword soffice npm; do
  command -v "$tool" >/dev/null || { echo "missing $tool (see the head of $0)" >&2; exit 1; }
done
python3 -c 'import docx' 2>/dev/null || { echo "missing python-docx: pip install python-docx" >&2; exit 1; }
WORK=$(mktemp -d /tmp/stowage-text-corpus.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# PDF
(cd "$WORK" && apt-get download texlive-latex-base-doc texlive-latex-recommended-doc >/dev/null 2>&1) || {
  apt-get update -qq >/dev/null && (cd "$WORK" && apt-get download texlive-latex-base-doc texlive-latex-recommended-doc >/dev/null)
}
for deb in "$WORK"/*.deb; do dpkg-deb -x "$deb" "$WORK/pdf"; done

# DOCX (and the PDF libraries' test PDFs): the sdists' and npm package's own test documents
mkdir -p "$WORK/docx" "$WORK/src"
python3 - "$WORK/src" python-docx pydocx odfpy pypdf tabula-py ocrmypdf <<'EOF'
import io, json, sys, tarfile, urllib.parse, urllib.request, zipfile
root = sys.argv[1]
for project in sys.argv[2:]:
    index = f"https://pypi.org/pypi/{project}/json"
    release = json.load(urllib.request.urlopen(index, timeout=60))
    url = next(urllib.parse.urljoin(index, f["url"]) for f in release["urls"] if f["packagetype"] == "sdist")
    data = urllib.request.urlopen(url, timeout=300).read()
    if url.endswith(".zip"):
        zipfile.ZipFile(io.BytesIO(data)).extractall(f"{root}/{project}")
    else:
        tarfile.open(fileobj=io.BytesIO(data)).extractall(f"{root}/{project}", filter="data")
EOF
(cd "$WORK/src" && npm pack mammoth --silent >/dev/null && mkdir mammoth && tar xzf mammoth-*.tgz -C mammoth)
n=0
while IFS= read -r -d '' f; do
  n=$((n + 1))
  cp "$f" "$WORK/docx/$n-$(basename "$f")"
done < <(find "$WORK/src" -iname '*.docx' -print0 | sort -z)
mkdir -p "$WORK/pdf/tests"
n=0
while IFS= read -r -d '' f; do
  n=$((n + 1))
  cp "$f" "$WORK/pdf/tests/$n-$(basename "$f" | tr ' ' _)"
done < <(find "$WORK/src/pypdf" "$WORK/src/tabula-py" "$WORK/src/ocrmypdf" -iname '*.pdf' -print0 | sort -z)

# DOC: LibreOffice saves each DOCX as Word 97-2003
mkdir -p "$WORK/doc"
soffice --headless --norestore "-env:UserInstallation=file://$WORK/lo" \
  --convert-to 'doc:MS Word 97' --outdir "$WORK/doc" "$WORK"/docx/*.docx >/dev/null 2>&1 || true

# ODT: odfpy's own documents, and LibreOffice's of each DOCX; RTF: LibreOffice's of both
mkdir -p "$WORK/odt" "$WORK/rtf" "$WORK/ref/odt" "$WORK/ref/rtf"
n=0
while IFS= read -r -d '' f; do
  n=$((n + 1))
  cp "$f" "$WORK/odt/odfpy-$n-$(basename "$f")"
done < <(find "$WORK/src/odfpy" -iname '*.odt' -print0 | sort -z)
lo() { soffice --headless --norestore "-env:UserInstallation=file://$WORK/lo" "$@" >/dev/null 2>&1 || true; }
lo --convert-to odt --outdir "$WORK/odt" "$WORK"/docx/*.docx
lo --convert-to rtf --outdir "$WORK/rtf" "$WORK"/docx/*.docx "$WORK"/odt/odfpy-*.odt
lo --convert-to 'txt:Text (encoded):UTF8' --outdir "$WORK/ref/odt" "$WORK"/odt/*.odt
lo --convert-to 'txt:Text (encoded):UTF8' --outdir "$WORK/ref/rtf" "$WORK"/rtf/*.rtf
export REF_TEXT=$WORK/ref

cargo build --release --bin stowage --example text_corpus >/dev/null 2>&1
{
  echo "# Text extraction on real documents ($(date -u +%Y-%m-%d), $(nproc) cores)"
  echo "# stowage: \`stowage extract\` per document (pdf_oxide for PDF, office_oxide for DOCX/DOC)"
  echo "# reference: pdftotext $(pdftotext -v 2>&1 | head -1 | awk '{print $3}'), python-docx $(python3 -c 'import docx; print(docx.__version__)'), antiword"
  echo "# corpus: PDFs of texlive-latex-base-doc and texlive-latex-recommended-doc, and the test PDFs of pypdf, tabula-py, ocrmypdf (PyPI);"
  echo "#   DOCX test files of python-docx, pydocx (PyPI) and mammoth (npm); DOC = those saved by LibreOffice;"
  echo "#   ODT = odfpy's test files (PyPI) and the DOCX saved by LibreOffice; RTF = the DOCX and odfpy's saved by LibreOffice"
  echo "# reference for ODT and RTF: LibreOffice $(soffice --version 2>/dev/null | awk '{print $2}')'s text export"
  echo "# isolated = \`stowage extract\` as a child process per document, as the service runs it;"
  echo "#   library = the same extraction in one process (examples/text_corpus.rs)"
  echo "# glued = Stowage tokens that are 2-4 consecutive reference tokens run together (cells, fields)"
  echo "# speed = reference seconds / stowage isolated seconds, lib speed = reference / library (above 1: stowage is faster)"
  echo "# python-docx runs in one process; pdftotext and antiword as a process per document"
  find "$WORK/pdf" "$WORK/docx" "$WORK/doc" "$WORK/odt" "$WORK/rtf" -type f \
    \( -name '*.pdf' -o -name '*.docx' -o -name '*.doc' -o -name '*.odt' -o -name '*.rtf' \) -print0 |
    sort -z | xargs -0 python3 bench/text_corpus.py target/release/stowage target/release/examples/text_corpus | sed "s|$WORK/||"
} | tee bench/text-corpus.txt

#!/usr/bin/env python3
"""Measures Stowage's text extraction on real documents against reference extractors.

Usage: text_corpus.py STOWAGE_BINARY IN_PROCESS_TIMER FILE...   (bench/text-corpus.sh downloads
the corpora; IN_PROCESS_TIMER is the text_corpus example, which times the libraries alone)

Each document is extracted the way the service does it, by `stowage extract --kind K` with the
document on stdin (a child process per document, with its limits), and by the reference:
poppler's `pdftotext` for PDF, python-docx (paragraphs and tables in document order) for DOCX,
`antiword` for DOC. Words are compared as multisets after NFKC folding and lower-casing
(`\\w+`): "recovered" is the share of the reference's words that Stowage's text also has, "extra"
the share of Stowage's words the reference lacks, "glued" how many of Stowage's
whitespace-separated tokens are two to four consecutive tokens of the reference run together
(table cells or form fields the reference keeps apart). Documents where the reference finds no words
(scanned pages, empty test files) are counted but left out of the word figures.
"""

import collections
import re
import subprocess
import sys
import time
import unicodedata

WORD = re.compile(r"\w+")
KINDS = {"pdf": "pdf", "docx": "docx", "doc": "doc", "rtf": "rtf", "odt": "odt"}


def words(text):
    return collections.Counter(WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def glued(ours, ref):
    """Stowage's tokens that are 2-4 consecutive reference tokens without their separators."""
    ref_tokens = ref.split()
    known = set(ref_tokens)
    runs = set()
    for i in range(len(ref_tokens)):
        for k in (2, 3, 4):
            if i + k <= len(ref_tokens):
                runs.add("".join(ref_tokens[i:i + k]))
    return sum(1 for token in ours.split() if token not in known and token in runs)


def docx_reference(path):
    import docx  # python-docx
    from docx.table import Table

    out = []

    def table_text(table):
        for row in table.rows:
            seen = set()
            for cell in row.cells:
                if id(cell._tc) in seen:  # a merged cell is listed once per column it spans
                    continue
                seen.add(id(cell._tc))
                block_text(cell)

    def block_text(container):
        for block in container.iter_inner_content():
            if isinstance(block, Table):
                table_text(block)
            else:
                out.append(block.text)

    block_text(docx.Document(path))
    return "\n".join(out)


def reference(kind, path):
    if kind in ("rtf", "odt"):
        # LibreOffice's own text export, made beforehand for every file (REF_TEXT/KIND/NAME.txt).
        import os
        name = os.path.basename(path).rsplit(".", 1)[0] + ".txt"
        try:
            return open(os.path.join(os.environ["REF_TEXT"], kind, name), encoding="utf-8", errors="replace").read()
        except OSError:
            return None
    if kind == "pdf":
        run = subprocess.run(["pdftotext", "-enc", "UTF-8", path, "-"], capture_output=True, timeout=120)
        return run.stdout.decode("utf-8", "replace") if run.returncode == 0 else None
    if kind == "doc":
        run = subprocess.run(["antiword", "-w", "0", "-m", "UTF-8.txt", path], capture_output=True, timeout=120)
        return run.stdout.decode("utf-8", "replace") if run.returncode == 0 else None
    try:
        return docx_reference(path)
    except Exception:  # the reference cannot read it: not counted against Stowage
        return None


def pages(kind, path):
    if kind != "pdf":
        return 0
    run = subprocess.run(["pdfinfo", path], capture_output=True, text=True, errors="replace")
    match = re.search(r"^Pages:\s+(\d+)", run.stdout, re.M)
    return int(match.group(1)) if match else 0


def stowage(binary, kind, path):
    with open(path, "rb") as document:
        run = subprocess.run([binary, "extract", "--kind", kind], stdin=document, capture_output=True, timeout=300)
    if run.returncode == 0:
        return run.stdout.decode("utf-8"), None
    if run.returncode == 3:
        return None, run.stdout.decode("utf-8", "replace")
    return None, f"exit {run.returncode}: {run.stderr.decode('utf-8', 'replace')[-200:]}"


def main():
    binary, timer, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    import docx  # noqa: F401 — fail early without python-docx, not once per file

    # The libraries alone, in one process (no child per document).
    in_process = {}
    run = subprocess.run([timer, *paths], capture_output=True, text=True, check=True)
    for line in run.stdout.splitlines():
        seconds, path = line.split("\t", 1)
        in_process[path] = float(seconds)

    stats = collections.defaultdict(lambda: collections.Counter())
    low = collections.defaultdict(list)
    failures = collections.defaultdict(list)
    for path in paths:
        kind = KINDS.get(path.rsplit(".", 1)[-1].lower())
        if kind is None:
            continue
        s = stats[kind]
        s["files"] += 1
        started = time.perf_counter()
        ref = reference(kind, path)
        s["ref_seconds_x1e6"] += int((time.perf_counter() - started) * 1e6)
        started = time.perf_counter()
        ours, failure = stowage(binary, kind, path)
        s["our_seconds_x1e6"] += int((time.perf_counter() - started) * 1e6)
        s["lib_seconds_x1e6"] += int(in_process.get(path, 0.0) * 1e6)
        s["pages"] += pages(kind, path)
        if ref is None:
            s["ref_failed"] += 1
            continue
        ref_words = words(ref)
        if not ref_words:
            s["ref_empty"] += 1
            continue
        s["compared"] += 1
        our_words = words(ours or "")
        common = sum((ref_words & our_words).values())
        s["ref_words"] += sum(ref_words.values())
        s["our_words"] += sum(our_words.values())
        s["common"] += common
        s["glued"] += glued(ours or "", ref)
        if failure is not None:
            failures[kind].append((path, failure.strip()))
        recall = common / sum(ref_words.values())
        if recall < 0.95:
            low[kind].append((recall, path))

    print(f"{'kind':5} {'files':>5} {'compared':>8} {'pages':>6} {'recovered':>9} {'extra':>6} "
          f"{'glued':>5} {'<95%':>5} {'failed':>6} {'isolated s':>10} {'library s':>9} {'ref s':>7} {'speed':>6} {'lib speed':>9}")
    for kind in ("pdf", "docx", "doc", "rtf", "odt"):
        s = stats.get(kind)
        if not s:
            continue
        recovered = s["common"] / max(s["ref_words"], 1)
        extra = (s["our_words"] - s["common"]) / max(s["our_words"], 1)
        ours_s = s["our_seconds_x1e6"] / 1e6
        lib_s = s["lib_seconds_x1e6"] / 1e6
        ref_s = s["ref_seconds_x1e6"] / 1e6
        print(f"{kind:5} {s['files']:>5} {s['compared']:>8} {s['pages']:>6} {recovered:>9.2%} {extra:>6.2%} "
              f"{s['glued']:>5} {len(low[kind]):>5} {len(failures[kind]):>6} {ours_s:>10.2f} {lib_s:>9.2f} {ref_s:>7.2f} "
              f"{ref_s / max(ours_s, 1e-9):>5.2f}x {ref_s / max(lib_s, 1e-9):>8.2f}x")
        if s["pages"]:
            print(f"      pages/s: stowage isolated {s['pages'] / max(ours_s, 1e-9):.0f}, library alone "
                  f"{s['pages'] / max(lib_s, 1e-9):.0f}, reference {s['pages'] / max(ref_s, 1e-9):.0f}")
        if s["ref_failed"] or s["ref_empty"]:
            print(f"      left out: reference failed on {s['ref_failed']}, found no words in {s['ref_empty']}")
    for kind, rows in low.items():
        for recall, path in sorted(rows)[:10]:
            print(f"below 95%: {kind} {recall:.1%} {path}")
    for kind, rows in failures.items():
        for path, failure in rows[:10]:
            print(f"stowage failed where the reference read words: {kind} {path}: {failure}")


if __name__ == "__main__":
    main()

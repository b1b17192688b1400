#!/usr/bin/env python3
"""Measures Stowage's OCR on scanned versions of real PDF pages against the originals' text.

Usage: ocr_corpus.py STOWAGE_BINARY SCAN_DIR DPI PDF...   (bench/ocr-corpus.sh downloads the
corpus). Every 8th PDF gives one page (its second, or its first when it has one); the page is
rendered in grey at DPI by pdftoppm and written alone into an image-only PDF (no text layer),
which `stowage extract --kind pdf --ocr` reads. Words are compared as multisets after NFKC
folding and lower-casing (`\\w+`), as bench/text_corpus.py does: "recall" is the share of the
original page's words (pdftotext) that the OCR text has, "extra" the share of OCR words the
original lacks.
"""

import collections
import os
import re
import statistics
import subprocess
import sys
import time
import unicodedata
import zlib

from minipdf import pdf_of

WORD = re.compile(r"\w+")


def words(text):
    return collections.Counter(WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def page_count(path):
    run = subprocess.run(["pdfinfo", path], capture_output=True, text=True, errors="replace")
    match = re.search(r"^Pages:\s+(\d+)", run.stdout, re.M)
    return int(match.group(1)) if match else 0


def read_pgm(path):
    data = open(path, "rb").read()
    fields, at = [], 0
    while len(fields) < 4:
        while data[at:at + 1].isspace():
            at += 1
        start = at
        while not data[at:at + 1].isspace():
            at += 1
        fields.append(data[start:at])
    return int(fields[1]), int(fields[2]), data[at + 1:]


def image_pdf(width, height, pixels, page_width, page_height):
    """One page showing the grey image over the whole page: a scan, no text layer."""
    image = zlib.compress(pixels, 6)
    content = f"q {page_width} 0 0 {page_height} 0 0 cm /Im1 Do Q".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {page_width} {page_height}] "
        f"/Resources << /XObject << /Im1 4 0 R >> >> /Contents 5 0 R >>".encode(),
        f"<< /Type /XObject /Subtype /Image /Width {width} /Height {height} /ColorSpace /DeviceGray "
        f"/BitsPerComponent 8 /Filter /FlateDecode /Length {len(image)} >>\nstream\n".encode() + image + b"\nendstream",
        f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream",
    ]
    return pdf_of(objects)


def page_size(path, page):
    run = subprocess.run(["pdfinfo", "-f", str(page), "-l", str(page), path], capture_output=True, text=True,
                         errors="replace")
    match = re.search(r"size:\s+([\d.]+) x ([\d.]+) pts", run.stdout)
    return (float(match.group(1)), float(match.group(2))) if match else (612.0, 792.0)


def main():
    binary, scans, dpi, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    os.makedirs(scans, exist_ok=True)
    chosen = paths[::8]
    ref_total = ocr_total = common_total = 0
    seconds, failures, low = [], [], []
    pages = 0
    for n, path in enumerate(chosen):
        count = page_count(path)
        if count == 0:
            continue
        page = 2 if count > 1 else 1
        ref = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), path, "-"], capture_output=True)
        ref_words = words(ref.stdout.decode("utf-8", "replace"))
        if sum(ref_words.values()) < 20:  # a figure or a blank page: nothing to compare
            continue
        prefix = os.path.join(scans, f"{n}")
        subprocess.run(["pdftoppm", "-gray", "-r", dpi, "-f", str(page), "-l", str(page), "-singlefile", path,
                        prefix], check=True)
        width, height, pixels = read_pgm(prefix + ".pgm")
        scan = image_pdf(width, height, pixels, *page_size(path, page))
        started = time.perf_counter()
        run = subprocess.run([binary, "extract", "--kind", "pdf", "--ocr", "--seconds", "120", "--cpu-seconds",
                              "122"], input=scan, capture_output=True)
        elapsed = time.perf_counter() - started
        pages += 1
        if run.returncode != 4:
            failures.append((path, run.returncode, run.stdout[-200:].decode("utf-8", "replace")))
            ours = collections.Counter()
        else:
            seconds.append(elapsed)
            ours = words(run.stdout.decode("utf-8", "replace"))
        common = sum((ref_words & ours).values())
        ref_total += sum(ref_words.values())
        ocr_total += sum(ours.values())
        common_total += common
        recall = common / sum(ref_words.values())
        if recall < 0.9:
            low.append((recall, f"{path} page {page}"))
    print(f"pages {pages}, read by OCR {len(seconds)}, failed {len(failures)}")
    print(f"word recall {common_total / max(ref_total, 1):.2%}, extra words {(ocr_total - common_total) / max(ocr_total, 1):.2%}")
    if seconds:
        print(f"seconds per page (whole child: render at 300 dpi + Tesseract): median {statistics.median(seconds):.2f}, "
              f"mean {statistics.mean(seconds):.2f}, max {max(seconds):.2f}")
    for recall, what in sorted(low)[:10]:
        print(f"below 90%: {recall:.1%} {what}")
    for path, code, out in failures[:10]:
        print(f"failed (exit {code}): {path}: {out}")


if __name__ == "__main__":
    main()

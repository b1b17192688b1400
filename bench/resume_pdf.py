#!/usr/bin/env python3
"""Writes a two-page resume-like text PDF (Helvetica, about 450 words) to stdout: the document
the bench's webhook workloads promote (a real text layer to parse, unlike the load generator's
synthetic bodies, which fail extraction at once).

    bench/resume_pdf.py [SIZE]   # SIZE bytes at least: an embedded font's worth of
                                 # incompressible bytes, as real resumes carry
"""

import random
import sys

from minipdf import pdf_of

WORDS = ("experience engineering team platform design delivered services customers data "
         "reliability migration latency throughput mentored hiring roadmap python rust sql "
         "kubernetes observability incident budget stakeholders quarterly launched reduced "
         "improved automated pipeline testing review architecture").split()


def page(n):
    lines = [f"Candidate Resume - page {n}", ""]
    for i in range(40):
        words = [WORDS[(n * 31 + i * 7 + j * 3) % len(WORDS)] for j in range(6)]
        lines.append(f"{i + 1}. " + " ".join(words))
    content = "BT /F1 11 Tf 60 750 Td 15 TL\n" + "".join(
        "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*\n" for line in lines
    ) + "ET"
    return content.encode()


pages = [page(1), page(2)]
objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [4 0 R 6 0 R] /Count 2 >>",
           b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
for i, content in enumerate(pages):
    objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                   f"/Contents {5 + 2 * i} 0 R >>".encode())
    objects.append(f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream")
if len(sys.argv) > 1:
    font = random.Random(1).randbytes(max(0, int(sys.argv[1]) - len(pdf_of(objects)) - 64))
    objects[2] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /FontDescriptor 8 0 R >>"
    objects.append(b"<< /Type /FontDescriptor /FontName /Helvetica /FontFile 9 0 R >>")
    objects.append(f"<< /Length {len(font)} >>\nstream\n".encode() + font + b"\nendstream")
sys.stdout.buffer.write(pdf_of(objects))

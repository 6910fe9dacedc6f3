#!/usr/bin/python3
"""Puts a benchmark's table into docs/benchmarks.md.

    update_benchmarks.py NEW.md [DOC]

NEW.md starts with its "## ..." heading; the section of DOC with the same heading (up to the
next "## " heading) is replaced, or the section is appended. Other sections stay as they are.
"""
import re
import sys

new = open(sys.argv[1]).read()
doc_path = sys.argv[2] if len(sys.argv) > 2 else "docs/benchmarks.md"
heading = new.splitlines()[0]
if not heading.startswith("## "):
    sys.exit("update_benchmarks: %s must start with a '## ' heading" % sys.argv[1])
try:
    doc = open(doc_path).read()
except FileNotFoundError:
    doc = "# Benchmarks\n\nTables written by the benchmarks in bench/; each names the machine it ran on.\n\n"
pat = re.compile(re.escape(heading) + r".*?(?=\n## |\Z)", re.S)
if pat.search(doc):
    doc = pat.sub(lambda m: new.rstrip("\n"), doc)
else:
    doc = doc.rstrip("\n") + "\n\n" + new
open(doc_path, "w").write(doc if doc.endswith("\n") else doc + "\n")

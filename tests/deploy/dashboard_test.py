#!/usr/bin/python3
"""deploy/grafana/tandem.json against what tandem really exports.

usage: dashboard_test.py TANDEM MODEL_DIR DASHBOARD.json

Starts `tandem serve --kv-store DIR` (router + prefill + decode processes,
both workers with the disk tier) and `tandem serve --in-process --kv-store
DIR`, sends each one request, scrapes the router's /metrics and each
worker's, and checks that:
- the dashboard is valid JSON with a datasource variable, and every panel
  and query uses that variable instead of a fixed datasource;
- every tandem_* name a query uses is a family of those pages (a histogram's
  _bucket/_sum/_count included), and every label a query selects on or
  groups by is one that family carries (or one Prometheus adds: job,
  instance, le) or one the query joins from tandem_worker_info.
"""
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploylib import Proc, chat, families, http, wait_http  # noqa: E402

TANDEM, MODEL, DASHBOARD = sys.argv[1:4]
TARGET_LABELS = {"job", "instance", "le"}
HIST_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def scrape_serve(extra, tmp):
    """Families of every page one `tandem serve` exports."""
    p = Proc([TANDEM, "serve", "--port", "0", "--model", MODEL, "--threads", "1",
              "--kv-store", tempfile.mkdtemp(dir=tmp), *extra])
    try:
        base = p.wait_for(r"serving \S+ on (http://[0-9.]+:\d+)").group(1)
        wait_http(base + "/ready", procs=[p])
        assert chat(base) == 200
        pages = [base + "/metrics"]
        if "--in-process" not in extra:
            # both workers' lines (a worker can register before its line is out)
            p.wait_for(r"metrics on http://(?:.|\n)*metrics on http://")
            workers = re.findall(r"metrics on (http://\S+/metrics)", p.text())
            assert len(workers) == 2, p.text()
            pages += workers
        fams = {}
        for url in pages:
            status, text = http(url)
            assert status == 200, url
            for name, f in families(text).items():
                g = fams.setdefault(name, {"type": f["type"], "labels": set()})
                g["labels"] |= f["labels"]
        return fams
    finally:
        assert p.stop() == 0, p.text()


def exprs(dash):
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            yield panel["title"], t
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            yield "variable " + v["name"], {"expr": v["definition"], "datasource": v["datasource"]}


def labels_used(expr):
    """Label names in selectors {a="x"} and in by (...) / on (...) clauses."""
    used = set()
    for sel in re.findall(r"\{([^}]*)\}", expr):
        used |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", sel))
    for group in re.findall(r"\b(?:by|on|group_left|group_right)\s*\(([^)]*)\)", expr):
        used |= {x.strip() for x in group.split(",") if x.strip()}
    return used


def main():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    var = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert len(var) == 1 and var[0]["query"] == "prometheus", "one prometheus datasource variable"
    ds_ref = "${%s}" % var[0]["name"]

    with tempfile.TemporaryDirectory() as tmp:
        fams = scrape_serve([], tmp)
        for name, f in scrape_serve(["--in-process"], tmp).items():
            fams.setdefault(name, f)["labels"] |= f["labels"]

    problems = []
    n = 0
    for panel in dash["panels"]:
        if panel["type"] != "row" and panel.get("datasource", {}).get("uid") != ds_ref:
            problems.append("%s: panel datasource is not %s" % (panel["title"], ds_ref))
    for title, t in exprs(dash):
        n += 1
        if t.get("datasource", {}).get("uid") != ds_ref:
            problems.append("%s: query datasource is not %s" % (title, ds_ref))
        names = set(re.findall(r"\btandem_\w+", t["expr"]))
        if not names:
            problems.append("%s: no tandem metric in %r" % (title, t["expr"]))
        allowed = set(TARGET_LABELS)
        for name in names:
            fam = fams.get(name)
            if fam is None and HIST_SUFFIX.search(name):
                fam = fams.get(HIST_SUFFIX.sub("", name))
                if fam and fam["type"] != "histogram":
                    fam = None
            if fam is None:
                problems.append("%s: %s is not exported" % (title, name))
            else:
                allowed |= fam["labels"]
        for label in labels_used(t["expr"]) - allowed:
            problems.append("%s: label %r is on none of %s" % (title, label, sorted(names)))
    for p in problems:
        print("FAIL", p)
    print("%d queries, %d families scraped, %d problems" % (n, len(fams), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""The Grafana dashboard (deploy/grafana/rds-csi.json) uses exactly the documented metrics.

    python3 tests/grafana/test_dashboard.py

Every metric a panel queries is one that docs/controller.md or docs/node.md lists in its
metrics table (a histogram's _bucket and a counter's _total are the listed metric), and every
listed metric is on some panel. Panels lie on the grid without overlapping. Stdlib only.
"""

import json
import os
import re
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "rds-csi.json")
DOCS = [os.path.join(ROOT, "docs", name) for name in ("controller.md", "node.md")]
METRIC = re.compile(r"\brds_csi_[a-z_]+")


def documented():
    """Metric names in the first column of the docs' metrics tables, without labels."""
    names = set()
    for path in DOCS:
        with open(path) as f:
            for line in f:
                m = re.match(r"\| `(rds_csi_[a-z_]+)", line)
                if m:
                    names.add(m.group(1))
    return names


def base(name):
    """The documented name of a queried series: _bucket/_count/_sum of a histogram, and
    _total of a counter, whose docs name it with or without _total."""
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class Dashboard(unittest.TestCase):
    def setUp(self):
        with open(DASHBOARD) as f:
            self.dashboard = json.load(f)
        self.panels = self.dashboard["panels"]
        self.exprs = [t["expr"] for p in self.panels for t in p.get("targets", [])]

    def test_it_queries_exactly_the_documented_metrics(self):
        docs = documented()
        self.assertGreater(len(docs), 10, docs)
        queried = {base(n) for e in self.exprs for n in METRIC.findall(e)}
        accepted = docs | {d[: -len("_total")] for d in docs if d.endswith("_total")} | {d + "_total" for d in docs}
        self.assertEqual(sorted(q for q in queried if q not in accepted), [], "queried but not documented")
        covered = {d for d in docs if d in queried or d + "_total" in queried
                   or (d.endswith("_total") and d[: -len("_total")] in queried)}
        self.assertEqual(sorted(docs - covered), [], "documented but on no panel")

    def test_panels_tile_the_grid(self):
        taken = set()
        for p in self.panels:
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    self.assertNotIn((x, y), taken, p["title"])
                    taken.add((x, y))
        ids = [p["id"] for p in self.panels]
        self.assertEqual(len(ids), len(set(ids)))

    def test_every_query_uses_the_chosen_data_source(self):
        for p in self.panels:
            for t in p.get("targets", []):
                self.assertEqual(t["datasource"]["uid"], "${datasource}", p["title"])
        self.assertIn("datasource", [v["name"] for v in self.dashboard["templating"]["list"]])


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""Checks docs/monitoring against promtool and against the code.

1. promtool check rules, and promtool test rules (loom-alerts-test.yml fires each
   alert on synthetic series).
2. Every metric an alert or a Grafana panel queries is documented in docs/metrics.md.
3. Every metric docs/metrics.md documents is exported by the code (its name is a
   string in the sources), so the docs cannot list what does not exist.

Exit 77 (ctest: skipped) when promtool is not installed, except under CI=true.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

root = pathlib.Path(sys.argv[1]).resolve()
docs = (root / "docs/metrics.md").read_text()
rules = root / "docs/monitoring/loom-alerts.yml"
dashboard = root / "docs/monitoring/grafana-loom.json"
failures = []

NAME = re.compile(r"\bloom_[a-z_]+[a-z]")


def base(name):
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix) and name[: -len(suffix)] in documented:
            return name[: -len(suffix)]
    return name


documented = set(NAME.findall(docs))

# 3: the documented names exist in the code.
sources = ""
for folder in ("common", "feedback", "orchestrator", "inference", "sandbox"):
    for path in (root / folder).rglob("*.cc"):
        sources += path.read_text(errors="replace")
for name in sorted(documented):
    if '"' + name + '"' not in sources:
        failures.append(f"docs/metrics.md names {name}, which no source file exports")

# 2: what the rules and the dashboard query is documented.
queried = set(NAME.findall(rules.read_text()))
board = json.loads(dashboard.read_text())
for panel in board["panels"]:
    for target in panel["targets"]:
        queried |= set(NAME.findall(target["expr"]))
for name in sorted(queried):
    if base(name) not in documented:
        failures.append(f"{name} is queried by the rules or the dashboard, not in docs/metrics.md")

# 1: promtool.
promtool = shutil.which("promtool")
if promtool is None:
    for f in failures:
        print("FAIL:", f)
    print("promtool is not installed (Debian: prometheus; scripts/setup.sh --tests)")
    # CI installs it: there a missing promtool is a failure, not a skip.
    sys.exit(1 if failures or os.environ.get("CI") == "true" else 77)
for args, cwd in (
    (["check", "rules", str(rules)], root),
    (["test", "rules", "loom-alerts-test.yml"], root / "tests/monitoring"),
):
    run = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True)
    print(run.stdout + run.stderr)
    if run.returncode != 0:
        failures.append("promtool " + " ".join(args) + " failed")

for f in failures:
    print("FAIL:", f)
print(f"{len(documented)} documented metrics, {len(queried)} queried; "
      f"{'FAILED' if failures else 'ok'}")
sys.exit(1 if failures else 0)

"""The findings table in benchmarks/RESULTS.md is what ``paper_findings.py --summarize`` prints from
the committed runs: a rerun or a new seed that is not carried into RESULTS.md fails here."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "runs" / "findings-threads-2.jsonl"


def test_results_tables_are_the_committed_runs_summary():
    printed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "paper_findings.py"), "--summarize", str(RUNS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    table_lines = [line for line in printed.splitlines() if line.startswith("|")]
    assert len(table_lines) > 8
    missing = [line for line in table_lines if line not in results]
    assert not missing, missing
    seeds = {line.split()[1] for line in printed.splitlines() if line.startswith("seed ")}
    assert len(seeds) >= 5

"""benchmarks/outputs.py keeps running: a small output through every measurement, its JSON line sane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_small_run_measures_every_step():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "outputs.py"), "--units", "30", "--real-units", "12"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (result,) = json.loads(proc.stdout.strip().splitlines()[-1])["results"]
    steps = (
        "commit_real",
        "commit",
        "commit_unmerged",
        "status_unmerged",
        "merge",
        "resume",
        "status",
        "query",
        "compact",
    )
    assert result["units"] == 30 and all(result[s]["seconds"] > 0 for s in steps)

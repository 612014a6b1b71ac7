"""benchmarks/scale.py keeps running: a small synthetic index through every planner, its JSON line sane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_small_run_plans_every_way():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--segments", "2000", "--baseline-segments", "1000"]
    cmd += ["--partition-rows", "500", "--units", "300", "--s3-units", "100,200"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["segments"] == 2000 and result["chains"] == 200  # a chain per video of 10 segments
    assert result["baseline"]["chains"] == result["columnar_at_baseline"]["chains"] == 100
    assert result["units"] == 300 and all(result[k] > 0 for k in ("status_s", "query_s", "compact_s", "resume_plan_s"))
    assert [r["units"] for r in result["s3"]] == [100, 200] and all(r["status_requests"] > 0 for r in result["s3"])

"""Running a bench module as its users do (`python -m loadtest.bench...` from the repository's root), for the tests
that keep the benches from rotting between runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(module: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <argv>` from the root with the root on PYTHONPATH; fails the test unless it exits 0."""
    run = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run

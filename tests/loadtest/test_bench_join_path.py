"""The in-process join path bench (loadtest/bench/join_path.py) at a small size, so it cannot rot between runs: every
hello fed to a real node's connections ends in a snapshot, in either wire format, and a CPU figure is reported."""

from __future__ import annotations

import json

import pytest
from loadtest.bench import join_path


@pytest.mark.timeout(60)
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_bench_join_path_small_run_joins_everyone(encoding: str, capsys: pytest.CaptureFixture[str]) -> None:
    join_path.main(["--joins", "40", "--repeats", "2", "--concurrency", "10", "--encoding", encoding])
    result = json.loads(capsys.readouterr().out)
    assert result["encoding"] == encoding and result["joins_per_repeat"] == 40
    assert len(result["us_per_join"]) == 2 and result["best_us_per_join"] > 0

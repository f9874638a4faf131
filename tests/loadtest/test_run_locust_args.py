"""loadtest/run_locust.py's arguments (plain argparse: no locust, no gevent in this process)."""

from __future__ import annotations

import pytest

from tests.helpers import run_locust_module


def test_run_locust_takes_an_admin_key_that_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # secrets.token_urlsafe starts one key in 64 with "-": a CI run of the rolling restart once failed on that, when
    # the key was passed as a separate argument. From the environment (how rolling_restart.py passes it) or in the
    # `--admin-key=…` form it is a value, never an option.
    run_locust = run_locust_module()
    monkeypatch.setenv("JANSAMVAD_ADMIN_KEY", "-Ab3_key-from-env")
    args, _ = run_locust.arguments(["--target", "http://127.0.0.1:1"])
    assert args.admin_key == "-Ab3_key-from-env"
    args, _ = run_locust.arguments(["--target", "http://127.0.0.1:1", "--admin-key=-given-on-the-line"])
    assert args.admin_key == "-given-on-the-line"

"""The `jansamvad` command: flags, environment variables and their validation, tokens, the demo."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from click.testing import CliRunner

from jansamvad.auth import TokenService
from jansamvad.cli import main
from jansamvad.localredis import free_port

SECRET = "cli-secret-" + "x" * 32


def test_cli_serve_refuses_a_short_secret_with_a_clear_message() -> None:
    result = CliRunner().invoke(main, ["serve", "--secret", "short", "--admin-key", "k" * 20])
    assert result.exit_code == 2
    assert "secret must be at least 32 bytes" in result.output


def test_cli_serve_reads_settings_from_environment() -> None:
    env = {"JANSAMVAD_SECRET": "short", "JANSAMVAD_ADMIN_KEY": "k" * 20}
    result = CliRunner().invoke(main, ["serve"], env=env)
    assert result.exit_code == 2 and "secret must be at least 32 bytes" in result.output


def test_cli_serve_refuses_a_short_admin_key() -> None:
    result = CliRunner().invoke(main, ["serve", "--secret", SECRET, "--admin-key", "short"])
    assert result.exit_code == 2 and "admin key must be at least 16 characters" in result.output


def test_cli_serve_validates_numbers() -> None:
    result = CliRunner().invoke(main, ["serve", "--port", "70000"])
    assert result.exit_code == 2 and "70000" in result.output
    result = CliRunner().invoke(main, ["serve", "--tick-ms", "500"])
    assert result.exit_code == 2


def test_cli_serve_help_lists_environment_variables() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert "JANSAMVAD_SECRET" in result.output and "JANSAMVAD_MAX_CONNECTIONS" in result.output
    for name in ("CITIZEN_TOKEN_TTL", "STAFF_TOKEN_TTL", "MAX_OPEN_TOWNHALLS", "TOWNHALL_CREATES_PER_MINUTE"):
        assert f"JANSAMVAD_{name}" in result.output


def test_cli_token_issues_a_verifiable_token() -> None:
    result = CliRunner().invoke(main, ["token", "--role", "admin", "--secret", SECRET, "--ttl", "120"])
    assert result.exit_code == 0
    claims = TokenService(SECRET).verify(result.output.strip())
    assert (claims.role, claims.th) == ("admin", "*")


def test_cli_token_needs_a_townhall_for_other_roles() -> None:
    result = CliRunner().invoke(main, ["token", "--role", "leader", "--secret", SECRET])
    assert result.exit_code == 2 and "give --th" in result.output


def test_cli_demo_prints_three_links_that_work_and_stops_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jansamvad", "serve", "--demo", "--port", str(port), "--log-level", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines: dict[str, str] = {}
        deadline = time.monotonic() + 20
        assert proc.stdout is not None
        while len(lines) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            match = re.match(r"(citizen|leader|moderator): (\S+)", line)
            if match:
                lines[match.group(1)] = match.group(2)
        assert set(lines) == {"citizen", "leader", "moderator"}
        th = re.search(r"th=(\w+)", lines["citizen"])
        assert th is not None
        assert "#token=" in lines["leader"] and "#token=" in lines["moderator"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/townhalls/{th.group(1)}", timeout=5) as response:
            assert response.status == 200 and b"scheduled" in response.read()
        with urllib.request.urlopen(lines["citizen"], timeout=5) as response:
            assert response.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught, so the exit status is -SIGTERM.
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
        assert proc.stdout is not None
        rest = proc.stdout.read()
        proc.stdout.close()
    assert re.search(r"node \S+ stopped", rest), rest


def test_cli_tune_gc_freezes_startup_objects_and_raises_the_thresholds() -> None:
    import gc

    from jansamvad.cli import tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (20_000, 20, 100)
        assert gc.get_freeze_count() > 0  # what startup left is out of every later collection
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_cli_settings_refuse_a_zero_rate_limit_built_in_code() -> None:
    # The CLI's ranges refuse 0; Settings built in code (tests, embedding) get the same answer from validate().
    from jansamvad.settings import Settings, SettingsError

    for name in ("joins_per_minute_per_ip", "ask_per_minute", "ask_per_minute_per_ip", "votes_per_minute"):
        with pytest.raises(SettingsError, match=name.replace("_", "-")):
            Settings(secret="s" * 32, admin_key="a" * 32, **{name: 0}).validate()

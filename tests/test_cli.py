"""The `jansamvad` command: flags, environment variables and their validation, tokens, the demo."""

from __future__ import annotations

import json
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


def test_cli_token_scope_makes_a_local_moderator_and_only_a_moderator() -> None:
    args = ["token", "--th", "th1", "--secret", SECRET, "--scope", "D1"]
    result = CliRunner().invoke(main, [*args, "--role", "moderator"])
    assert result.exit_code == 0, result.output
    claims = TokenService(SECRET).verify(result.output.strip())
    assert (claims.role, claims.th, claims.scope) == ("moderator", "th1", "D1")
    for role, scope in (("leader", "D1"), ("moderator", "not a code!")):
        refused = CliRunner().invoke(
            main, ["token", "--th", "th1", "--secret", SECRET, "--role", role, "--scope", scope]
        )
        assert refused.exit_code == 2 and "--scope" in refused.output, (role, refused.output)


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
        # A graceful stop by a signal is a success: exit status 0 (uvicorn would re-raise the signal; the node not).
        assert proc.wait(timeout=15) == 0
        assert proc.stdout is not None
        rest = proc.stdout.read()
        proc.stdout.close()
    assert re.search(r"node \S+ stopped", rest), rest


def test_cli_tune_gc_freezes_startup_objects_and_raises_the_thresholds() -> None:
    import gc

    from jansamvad.server import tune_gc

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


def _start_serve(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jansamvad", "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    return proc, port


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 20) -> tuple[re.Match[str], str]:
    """Lines of the process's output until one matches (a bounded wait); the match and everything read."""
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match, "".join(seen)
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(seen)}")


def _stop(proc: subprocess.Popen[str], signum: int) -> tuple[int, str]:
    proc.send_signal(signum)
    try:
        status = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.stdout is not None
    rest = proc.stdout.read()
    proc.stdout.close()
    return status, rest


def test_cli_serve_prints_where_it_listens_and_the_page_links_of_a_townhall() -> None:
    env = {"JANSAMVAD_SECRET": SECRET, "JANSAMVAD_ADMIN_KEY": "k" * 20}
    proc, port = _start_serve(env=env)
    try:
        listening, _ = _read_until(proc, r"listening on 127\.0\.0\.1:(\d+): pages (\S+)/, WebSocket (\S+)")
        assert listening.group(1) == str(port)
        assert listening.group(3) == f"ws://127.0.0.1:{port}/ws"
        pages, _ = _read_until(proc, r"citizen (\S+), leader (\S+), moderator (\S+)")
        assert pages.group(1) == f"http://127.0.0.1:{port}/?th=<id>"
        assert pages.group(2) == f"http://127.0.0.1:{port}/leader.html?th=<id>#token=<leader-token>"
        # The printed base serves the citizen page, and a town hall made over the REST API opens with that link.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/townhalls",
            data=b'{"title": "t"}',
            headers={"Authorization": "Bearer " + "k" * 20, "content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            th = json.load(response)["id"]
        with urllib.request.urlopen(pages.group(1).replace("<id>", th), timeout=5) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
    finally:
        _stop(proc, signal.SIGTERM)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_cli_serve_demo_stopped_by_a_signal_exits_0_and_says_it_stopped_cleanly(signum: int) -> None:
    proc, _ = _start_serve("--demo")
    try:
        _read_until(proc, r"^moderator: ")
    finally:
        status, rest = _stop(proc, signum)
    assert status == 0, rest
    assert "Aborted!" not in rest and "Traceback" not in rest, rest
    assert "jansamvad stopped cleanly" in rest, rest

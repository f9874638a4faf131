"""Every setting is a `jansamvad serve` flag and a JANSAMVAD_* variable, derived from the one Settings declaration.

The serve command runs for real up to the point where it would start the node (run_node is replaced by a recorder),
so what is checked is what an operator gets: the flag or variable parsed, converted and validated into Settings.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jansamvad import cli, server
from jansamvad.protocol.messages import Limits
from jansamvad.settings import Settings

SECRET = "settings-secret-" + "s" * 32
ADMIN_KEY = "settings-admin-key-0123"
REDIS_URL = "redis://127.0.0.1:6390/0"  # parsed and checked only: the node never starts in these tests


@dataclasses.dataclass(frozen=True)
class Case:
    """One setting set to a value other than its default: the flag, its text, and what Settings must then hold."""

    path: str  # "tick_ms", or "limits.question_chars"
    flag: str
    text: str
    expected: Any
    extra: tuple[str, ...] = ()  # other flags the value needs to be valid (RS256 needs a public key)

    @property
    def envvar(self) -> str:
        return "JANSAMVAD_" + self.flag.upper().replace("-", "_")


def _serve_flags() -> dict[str, str]:
    """The --flag of each Settings path, read from the serve command (what an operator sees)."""
    flags: dict[str, str] = {}
    for param in cli.main.commands["serve"].params:
        long = next((o for o in param.opts if o.startswith("--")), None)
        if long is not None and param.name is not None:
            flags[param.name] = long[2:]
    return flags


def _number(default: float, kind: type) -> Any:
    return kind(default) + (1 if kind is int else 0.5)


def _cases(tmp_path: Path) -> Iterator[tuple[str, Any, Any]]:
    """(Settings path, text, expected value) for every field of Settings and every size of its Limits."""
    public_key = tmp_path / "public.pem"
    public_key.write_text("-----BEGIN PUBLIC KEY-----\nMII\n-----END PUBLIC KEY-----\n")
    special: dict[str, tuple[str, Any]] = {
        "public_url": ("https://jansamvad.example.org", "https://jansamvad.example.org"),
        "redis_url": (REDIS_URL, REDIS_URL),
        "jwt_algorithm": ("RS256", "RS256"),
        "log_level": ("warning", "warning"),
        "ack_durability": ("replica", "replica"),
        "io_uring": ("auto", "auto"),
        "trusted_proxies": ("10.0.0.0/8", ("10.0.0.0/8",)),
        "allowed_origins": ("https://a.example.org", ("https://a.example.org",)),
        "jwt_public_key": (str(public_key), public_key.read_text()),
        "jwt_private_key": (str(public_key), public_key.read_text()),
        "static_dir": (str(tmp_path), tmp_path),
        "moderation_dir": (str(tmp_path), tmp_path),
        "record_dir": (str(tmp_path), tmp_path),
        "record_s3_url": ("s3://records?endpoint=http://127.0.0.1:9000", "s3://records?endpoint=http://127.0.0.1:9000"),
        "health_port": ("8001", 8001),
        "secret": ("x" * 40, "x" * 40),
        "admin_key": ("y" * 20, "y" * 20),
    }
    hints = typing.get_type_hints(Settings)
    for spec in dataclasses.fields(Settings):
        if spec.name == "limits":
            for size in dataclasses.fields(Limits):
                value = _number(size.default, int)  # type: ignore[arg-type]
                yield f"limits.{size.name}", str(value), value
        elif spec.name in special:
            yield spec.name, *special[spec.name]
        elif hints[spec.name] in (int, float):
            value = _number(spec.default, hints[spec.name])  # type: ignore[arg-type]
            yield spec.name, str(value), value
        else:
            yield spec.name, "x-" + spec.name, "x-" + spec.name


def all_cases(tmp_path: Path) -> list[Case]:
    flags = _serve_flags()
    needs = {"jwt_algorithm": ("--jwt-public-key", str(tmp_path / "public.pem")), "ack_durability": ("--redis-url",)}
    cases = []
    for path, text, expected in _cases(tmp_path):
        param = path.replace("limits.", "limits__")
        flag = flags.get(param, "")  # empty: not settable, which the tests below report
        extra = needs.get(path, ())
        if extra == ("--redis-url",):
            extra = ("--redis-url", REDIS_URL)
        cases.append(Case(path, flag, text, expected, extra))
    return cases


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """The Settings `serve` would run a node with (the node is not started, logging is left alone)."""
    seen: list[Settings] = []

    def record(settings: Settings, **kwargs: object) -> None:
        seen.append(settings)

    monkeypatch.setattr(server, "run_node", record)
    monkeypatch.setattr(cli, "run_node", record, raising=False)  # where it was before server.py had it
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)
    for name in list(os.environ):
        if name.startswith("JANSAMVAD_"):
            monkeypatch.delenv(name)
    return seen


def _serve(started: list[Settings], args: list[str], env: dict[str, str] | None = None) -> Settings:
    started.clear()
    result = CliRunner().invoke(cli.main, ["serve", *args], env=env)
    assert result.exit_code == 0, result.output
    assert len(started) == 1
    return started[0]


def _value(settings: Settings, path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


BASE = ["--secret", SECRET, "--admin-key", ADMIN_KEY]


def test_settings_every_field_is_settable_by_a_serve_flag(tmp_path: Path, started: list[Settings]) -> None:
    unsettable = []
    for case in all_cases(tmp_path):
        if not case.flag:
            unsettable.append(case.path)
            continue
        settings = _serve(started, [*BASE, *case.extra, "--" + case.flag, case.text])
        assert _value(settings, case.path) == case.expected, case
        assert _value(Settings(), case.path) != case.expected, f"{case.path}: the test value is the default"
    assert not unsettable, f"settings without a serve flag: {unsettable}"


def test_settings_every_field_is_settable_by_an_environment_variable(tmp_path: Path, started: list[Settings]) -> None:
    unsettable = []
    for case in all_cases(tmp_path):
        if not case.flag:
            unsettable.append(case.path)
            continue
        env = {"JANSAMVAD_SECRET": SECRET, "JANSAMVAD_ADMIN_KEY": ADMIN_KEY, case.envvar: case.text}
        settings = _serve(started, list(case.extra), env=env)
        assert _value(settings, case.path) == case.expected, case
    assert not unsettable, f"settings without a JANSAMVAD_* variable: {unsettable}"


def test_settings_serve_help_lists_every_flag_and_variable(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    missing = [c.path for c in all_cases(tmp_path) if not c.flag or f"--{c.flag} " not in result.output]
    missing += [c.envvar for c in all_cases(tmp_path) if c.flag and c.envvar not in result.output]
    assert not missing, f"not in `serve --help`: {missing}"
    # Grouped, with defaults and units shown (what an operator reads).
    for section in ("Node:", "Security:", "Connections and admission:", "Sessions:", "Fan-out:", "Redis:"):
        assert re.search(rf"^{section}$", result.output, re.MULTILINE), section
    assert re.search(r"--tick-ms FLOAT RANGE +Fan-out batching tick, ms.*default: 5\.0", result.output)


def test_settings_serve_flag_wins_over_the_environment(started: list[Settings]) -> None:
    settings = _serve(started, [*BASE, "--tick-ms", "7"], env={"JANSAMVAD_TICK_MS": "9", "JANSAMVAD_TOP_VOTES": "9"})
    assert (settings.tick_ms, settings.top_votes) == (7.0, 9)


def test_settings_serve_repeated_flags_and_whitespace_separated_variables_become_tuples(
    started: list[Settings],
) -> None:
    settings = _serve(started, [*BASE, "--trusted-proxy", "10.0.0.1", "--trusted-proxy", "10.0.0.0/8"])
    assert settings.trusted_proxies == ("10.0.0.1", "10.0.0.0/8")
    settings = _serve(started, BASE, env={"JANSAMVAD_ALLOWED_ORIGIN": "https://a.example https://b.example"})
    assert settings.allowed_origins == ("https://a.example", "https://b.example")


def test_settings_serve_bursts_default_to_four_seconds_of_their_rate(started: list[Settings]) -> None:
    # As before the one declaration: --citizen-messages-per-second 10 allowed bursts of 40.
    settings = _serve(started, [*BASE, "--citizen-messages-per-second", "10", "--reactions-per-second", "2"])
    assert (settings.citizen_msg_burst, settings.reaction_burst, settings.staff_msg_burst) == (40, 8, 200)
    settings = _serve(started, [*BASE, "--citizen-messages-per-second", "10", "--citizen-message-burst", "3"])
    assert settings.citizen_msg_burst == 3


def test_settings_serve_defaults_are_the_declared_defaults(started: list[Settings]) -> None:
    assert _serve(started, BASE) == Settings(secret=SECRET, admin_key=ADMIN_KEY)


def test_settings_serve_refuses_a_value_out_of_its_declared_range(started: list[Settings]) -> None:
    result = CliRunner().invoke(cli.main, ["serve", *BASE, "--max-question-chars", "5"])
    assert result.exit_code == 2 and "5 is not in the range 10<=x<=5000" in result.output
    result = CliRunner().invoke(cli.main, ["serve", *BASE], env={"JANSAMVAD_GROUP_THRESHOLD": "101"})
    assert result.exit_code == 2 and "101" in result.output
    assert not started

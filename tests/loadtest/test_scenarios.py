"""Scenarios, the pass/fail verdict and the launcher's arguments: plain data, no locust."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import run_locust
from jansamvad_locust import protocol, scenarios, verdict
from jansamvad_locust.scenarios import SCENARIOS, Thresholds
from jansamvad_locust.verdict import Latency, RunNumbers

README = Path(__file__).resolve().parents[2] / "loadtest" / "README.md"


def test_the_issue_names_every_scenario() -> None:
    assert set(SCENARIOS) == {"townhall", "reconnect-storm", "question-flood", "flaky-mobile", "ramp", "booths"}
    with pytest.raises(ValueError, match="choose one of"):
        scenarios.get("nope")


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=list(SCENARIOS))
def test_every_scenario_judges_losses_and_has_sane_knobs(scenario: scenarios.Scenario) -> None:
    t = scenario.thresholds
    assert t.max_lost == 0 and t.max_duplicates == 0 and t.min_speech_samples >= 1
    assert 0 <= t.max_fail_ratio < 0.05
    for citizen in filter(None, (scenario.citizen, scenario.flaky)):
        assert 0 < citizen.think[0] <= citizen.think[1]
        assert sum((citizen.ask, citizen.upvote, citizen.react, citizen.listen, citizen.drop)) > 0
    assert 0 <= scenario.storm_share <= 1 and 0 <= scenario.flaky_share <= 1


def test_ramp_rises_to_the_target_then_holds() -> None:
    ramp = scenarios.get("ramp")
    counts = [ramp.users_at(t, 500, 100.0) for t in range(0, 101, 5)]
    assert counts == sorted(counts) and counts[0] == ramp.moderators + 1 and counts[-1] == 500
    assert ramp.users_at(30, 500, 100.0) == 250 and ramp.users_at(60, 500, 100.0) == 500
    assert ramp.users_at(3, 500, None) == 500  # no run time: nothing to ramp over
    assert scenarios.get("townhall").users_at(0, 500, 60.0) == 500  # locust's spawn rate does the ramp


def numbers(**overrides: object) -> RunNumbers:
    base: dict[str, object] = {
        "scenario": "townhall",
        "users": 200,
        "duration_s": 20.0,
        "requests": 1000,
        "failures": 0,
        "speech": Latency(800, 12.0, 40.0, 45.0),
        "ask_ack": Latency(90, 2.0, 30.0, 31.0),
    }
    base.update(overrides)
    return RunNumbers(**base)  # type: ignore[arg-type]


def test_a_clean_run_passes() -> None:
    checks = verdict.judge(numbers(), Thresholds())
    assert verdict.passed(checks)
    text = verdict.render(numbers(), checks)
    assert "RESULT: PASS" in text and "speech delivery      p50 12 ms, p99 40 ms" in text


@pytest.mark.parametrize(
    ("overrides", "failed"),
    [
        ({"lost": 1, "gaps": 1}, "lost stream events"),
        ({"duplicates": 2}, "duplicate stream events"),
        ({"failures": 2}, "failure ratio"),
        ({"exceptions": 1}, "exceptions in users"),
        ({"speech": Latency(800, 12.0, 1500.0, 1600.0)}, "speech_delivery p99"),
        ({"speech": Latency()}, "speech samples, speech_delivery p99"),
        ({"ask_ack": Latency(90, 2.0, 5000.0, 6000.0)}, "ask_ack p99"),
    ],
)
def test_each_missed_threshold_fails_the_run(overrides: dict[str, object], failed: str) -> None:
    checks = verdict.judge(numbers(**overrides), Thresholds())
    assert not verdict.passed(checks)
    assert ", ".join(c.name for c in checks if not c.ok) == failed
    assert "RESULT: FAIL" in verdict.render(numbers(**overrides), checks)


def test_summary_json_carries_the_verdict_and_the_numbers() -> None:
    n = numbers(lost=3, gaps=1)
    data = verdict.as_json(n, verdict.judge(n, Thresholds()))
    assert data["passed"] is False and data["numbers"]["lost"] == 3 and data["numbers"]["speech"]["p99"] == 40.0


def test_launcher_durations_and_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JANSAMVAD_ADMIN_KEY", raising=False)
    monkeypatch.delenv("JANSAMVAD_LT_LEADER_TOKEN", raising=False)
    assert [run_locust.parse_duration(d) for d in ("90", "60s", "2m", "1h30m")] == [90, 60, 120, 5400]
    with pytest.raises(argparse.ArgumentTypeError):
        run_locust.parse_duration("soon")
    argv = ["--scenario", "ramp", "--users", "50", "--duration", "1m", "--", "--loglevel", "DEBUG"]
    args, extra = run_locust.arguments(argv)
    assert (args.scenario, args.users, args.duration, extra) == ("ramp", 50, 60, ["--loglevel", "DEBUG"])
    with pytest.raises(SystemExit):
        run_locust.arguments(["--target", "https://example.org"])  # neither an admin key nor tokens


def test_readme_documents_every_scenario_and_statistic() -> None:
    text = README.read_text()
    names = [protocol.SPEECH_DELIVERY, protocol.ASK_ACK, protocol.STREAM_GAP, protocol.STREAM_DUPLICATE]
    for name in [*SCENARIOS, *names, "speech_delivery_flaky", "connect", "resume"]:
        assert f"`{name}`" in text, f"loadtest/README.md does not mention `{name}`"

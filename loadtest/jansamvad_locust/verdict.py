"""Pass or fail: a run's numbers against its scenario's thresholds, and the summary printed at the end.

Plain data in, plain data out (no locust import): `hooks.py` reads the numbers out of locust's statistics at the end
of the run, and the unit tests judge hand-made numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from jansamvad_locust.scenarios import Thresholds


@dataclass(frozen=True, slots=True)
class Latency:
    """One request name's latency distribution (ms), as locust recorded it."""

    count: int = 0
    p50: float = 0.0
    p99: float = 0.0
    max: float = 0.0

    def show(self) -> str:
        if not self.count:
            return "no samples"
        return f"p50 {self.p50:.0f} ms, p99 {self.p99:.0f} ms, max {self.max:.0f} ms ({self.count} samples)"


@dataclass(frozen=True, slots=True)
class RunNumbers:
    scenario: str
    users: int = 0  # the most users running at once
    duration_s: float = 0.0
    requests: int = 0  # every WS and HTTP entry in locust's statistics, samples and failures
    failures: int = 0
    exceptions: int = 0  # errors raised in the users' own code: a bug in the load test, never acceptable
    speech: Latency = field(default_factory=Latency)
    speech_flaky: Latency = field(default_factory=Latency)
    ask_ack: Latency = field(default_factory=Latency)
    connect: Latency = field(default_factory=Latency)
    resume: Latency = field(default_factory=Latency)
    lost: int = 0  # stream events missing (the sum of every stream_gap's size)
    gaps: int = 0
    duplicates: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # "WS ask_ack: error bad_state …" -> occurrences

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    value: str
    limit: str
    ok: bool


def judge(n: RunNumbers, t: Thresholds) -> list[Check]:
    checks = [
        Check("failure ratio", f"{n.fail_ratio:.3%} ({n.failures}/{n.requests})", f"<= {t.max_fail_ratio:.3%}",
              n.fail_ratio <= t.max_fail_ratio),
        Check("lost stream events", f"{n.lost} in {n.gaps} gap(s)", f"<= {t.max_lost}", n.lost <= t.max_lost),
        Check("duplicate stream events", str(n.duplicates), f"<= {t.max_duplicates}", n.duplicates <= t.max_duplicates),
        Check("exceptions in users", str(n.exceptions), "0", n.exceptions == 0),
        Check("speech samples", str(n.speech.count), f">= {t.min_speech_samples}",
              n.speech.count >= t.min_speech_samples),
    ]  # fmt: skip
    if t.speech_p99_ms is not None:
        checks.append(_p99("speech_delivery p99", n.speech, t.speech_p99_ms))
    if t.ask_ack_p99_ms is not None and n.ask_ack.count:
        checks.append(_p99("ask_ack p99", n.ask_ack, t.ask_ack_p99_ms))
    return checks


def _p99(name: str, latency: Latency, limit_ms: float) -> Check:
    value = f"{latency.p99:.0f} ms" if latency.count else "no samples"
    return Check(name, value, f"<= {limit_ms:.0f} ms", latency.count > 0 and latency.p99 <= limit_ms)


def passed(checks: list[Check]) -> bool:
    return all(c.ok for c in checks)


def render(n: RunNumbers, checks: list[Check]) -> str:
    """The summary a person reads at the end of a run: the numbers, then every check, then the verdict."""
    lines = [
        "",
        f"=== JanSamvad load test: scenario {n.scenario}, {n.users} users, {n.duration_s:.0f} s ===",
        f"speech delivery      {n.speech.show()}",
    ]
    if n.speech_flaky.count:
        lines.append(f"  (flaky citizens)   {n.speech_flaky.show()}")
    lines += [
        f"ask ack              {n.ask_ack.show()}",
        f"connect (hello)      {n.connect.show()}",
        f"resume (reconnect)   {n.resume.show()}",
    ]
    if n.errors:
        lines.append("failures:")
        for what, count in sorted(n.errors.items(), key=lambda kv: -kv[1])[:10]:
            lines.append(f"  {count:6d}  {what}")
    lines.append("checks:")
    for c in checks:
        lines.append(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.value} (limit {c.limit})")
    lines.append(f"RESULT: {'PASS' if passed(checks) else 'FAIL'}")
    lines.append("")
    return "\n".join(lines)


def as_json(n: RunNumbers, checks: list[Check]) -> dict[str, Any]:
    """summary.json in the report folder: what the launcher, the tests and CI read."""
    return {
        "passed": passed(checks),
        "numbers": {**asdict(n), "fail_ratio": n.fail_ratio},
        "checks": [asdict(c) for c in checks],
    }

"""Side-by-side figures that a drifting machine cannot tilt (issue 19 item 4: measurement you can trust).

A session of runs on this machine drifts: in the picows comparison each run cost 0.25–0.39 µs per delivery more than
the one before (2–4 %), for both servers alike (suspected: closed connections pile up in TIME_WAIT and conntrack,
20,000 per run, each lingering 60–120 s; `pileup` records both before every run). ABBA order (A B B A A B ...)
balances a linear drift only for the *mean* of an even number of pairs; the *median* of three pairs takes A's 4th or
5th run against B's 3rd and hands B most of a run's drift. So next to the medians the scenario reports:

- `mean`: B's mean over A's;
- `drift_fit`: a least-squares fit of every run's figure to `level + slope × position + gap × [side is B]`, read as
  (level + gap) / level at the middle of the session: the ratio with the linear drift taken out, and the slope.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path


def _solve3(m: list[list[float]], v: list[float]) -> list[float]:
    """Solve a 3 x 3 linear system (Cramer's rule; the normal equations of a 3-parameter fit)."""

    def det(a: list[list[float]]) -> float:
        return (
            a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
            - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
        )

    d = det(m)
    if abs(d) < 1e-12:
        raise ValueError("singular: both sides and at least three runs are needed")
    out = []
    for col in range(3):
        replaced = [[v[r] if c == col else m[r][c] for c in range(3)] for r in range(3)]
        out.append(det(replaced) / d)
    return out


def drift_fit(values: Sequence[float], is_b: Sequence[bool]) -> tuple[float, float]:
    """(B ÷ A at the middle of the session with a linear drift taken out, the drift per run)."""
    rows = [(1.0, float(i), 1.0 if b else 0.0) for i, b in enumerate(is_b)]
    normal = [[sum(r[i] * r[j] for r in rows) for j in range(3)] for i in range(3)]
    rhs = [sum(r[i] * y for r, y in zip(rows, values, strict=True)) for i in range(3)]
    level, slope, gap = _solve3(normal, rhs)
    middle = level + slope * (len(values) - 1) / 2
    return (middle + gap) / middle, slope


def ratios(values: Sequence[float | None], sides: Sequence[str], a: str, b: str) -> dict[str, float | None]:
    """b ÷ a of one figure over a session's runs: by means and by the drift fit (None where a run lacks it)."""
    if any(v is None for v in values) or a not in sides or b not in sides:
        return {"mean": None, "drift_fit": None, "slope_per_run": None}
    xs = [float(v) for v in values if v is not None]
    mean_a = statistics.fmean(x for x, s in zip(xs, sides, strict=True) if s == a)
    mean_b = statistics.fmean(x for x, s in zip(xs, sides, strict=True) if s == b)
    try:
        fitted, slope = drift_fit(xs, [s == b for s in sides])
    except ValueError:
        return {"mean": round(mean_b / mean_a, 3), "drift_fit": None, "slope_per_run": None}
    return {"mean": round(mean_b / mean_a, 3), "drift_fit": round(fitted, 3), "slope_per_run": round(slope, 3)}


def pileup() -> dict[str, int | None]:
    """Sockets in TIME_WAIT and conntrack entries right now (what the runs before left behind)."""
    out: dict[str, int | None] = {"tcp_timewait": None, "conntrack": None}
    try:
        for line in Path("/proc/net/sockstat").read_text().splitlines():
            if line.startswith("TCP:"):
                fields = line.split()
                out["tcp_timewait"] = int(fields[fields.index("tw") + 1])
    except (OSError, ValueError):
        pass
    try:
        out["conntrack"] = int(Path("/proc/sys/net/netfilter/nf_conntrack_count").read_text())
    except (OSError, ValueError):
        pass
    return out

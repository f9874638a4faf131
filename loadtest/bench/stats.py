"""Latency histograms that merge across processes, and percentiles.

A value in microseconds keeps its top 8 significant bits (exact below 256 µs, within 0.8 % above), so a histogram of
millions of deliveries is a small dict that travels as JSON from a client worker to the orchestrator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Histogram = dict[int, int]


def bucket(us: int) -> int:
    shift = us.bit_length() - 8
    return us if shift <= 0 else (us >> shift) << shift


def merge(into: Histogram, other: Mapping[int, int] | Mapping[str, int]) -> Histogram:
    for key, count in other.items():
        k = int(key)
        into[k] = into.get(k, 0) + count
    return into


def hist_percentiles(hist: Mapping[int, int], points: Iterable[float] = (50, 90, 99, 99.9)) -> dict[str, float]:
    """Percentiles (ms) of a histogram of µs values, plus count and max."""
    total = sum(hist.values())
    out: dict[str, float] = {"count": total}
    if total == 0:
        return out
    keys = sorted(hist)
    for p in points:
        rank = max(1, round(total * p / 100))
        seen = 0
        for k in keys:
            seen += hist[k]
            if seen >= rank:
                out[f"p{p:g}"] = round(k / 1000, 3)
                break
    out["max"] = round(keys[-1] / 1000, 3)
    return out


def percentiles(values: Iterable[float], points: Iterable[float] = (50, 99)) -> dict[str, float]:
    """Nearest-rank percentiles of a small list (e.g. one value per round), plus max."""
    ordered = sorted(values)
    out: dict[str, float] = {"count": len(ordered)}
    if not ordered:
        return out
    for p in points:
        rank = max(1, round(len(ordered) * p / 100))
        out[f"p{p:g}"] = round(ordered[rank - 1], 3)
    out["max"] = round(ordered[-1], 3)
    return out

"""The issue's targets, and each run's measurement against them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    key: str
    what: str
    limit: float
    unit: str
    higher_is_better: bool
    at_n: int = 0  # the target is stated for this many listeners; a smaller run is only indicative
    strict: bool = False  # "beat": the limit itself is not enough (a ratio of 1.0 is level, not ahead)

    @property
    def comparison(self) -> str:
        if self.higher_is_better:
            return ">" if self.strict else "≥"
        return "<" if self.strict else "≤"

    def judge(self, measured: float | None, where: str, n: int = 0) -> dict[str, Any]:
        base = {"target": self.what, "limit": self.limit, "unit": self.unit, "comparison": self.comparison}
        if measured is None:
            return {**base, "measured": None, "status": "pending"}
        if self.higher_is_better:
            met = measured > self.limit if self.strict else measured >= self.limit
        else:
            met = measured < self.limit if self.strict else measured <= self.limit
        if n < self.at_n:
            return {
                **base,
                "measured": measured,
                "where": where,
                "status": "indicative",
                "gap": f"{'meets' if met else 'misses'} the limit, but measured below N = {self.at_n:,}",
            }
        if met:
            gap = "met"
        elif self.strict:  # a ratio that must be above (below) the limit: say by how much it is not
            gap = f"{measured:g}, not {'above' if self.higher_is_better else 'below'} {self.limit:g}"
        elif self.higher_is_better:
            gap = f"{measured / self.limit:.2f}× of target ({self.limit / measured:.1f}× short)"
        else:
            gap = f"{measured / self.limit:.2f}× the limit"
        return {
            **base,
            "measured": measured,
            "where": where,
            "status": "met" if met else "missed",
            "gap": gap,
        }


MEMORY = Target("memory", "RSS per idle joined connection at 20k", 8.0, "KB", False, at_n=19_000)
CPU_PER_DELIVERY = Target(
    "cpu", "server CPU per delivery, single broadcasts, 20k listeners", 5.0, "µs", False, at_n=19_000
)
BURST = Target("burst", "deliveries per second per server core, ≥ 10 messages per tick", 1_000_000, "/s", True)
HANDSHAKES = Target("handshake", "handshakes per second per process", 5_000, "/s", True)
# Issue 19 item 3: the join a citizen's page makes (Valkey, 2 nodes, a growing room, JSON, the hello in the offer).
JOINS = Target("joins", "joins per node process CPU-second, as citizens join", 5_000, "/s", True, at_n=10_000)
# Issue 19 item 4, the same workload in the same run (10,000 listeners a process): picows ÷ JanSamvad, above 1 ahead.
VS_PICOWS = {
    "us_per_delivery": Target(
        "picows_cpu", "fan-out CPU per delivery vs picows (picows ÷ JanSamvad)", 1.0, "×", True, 10_000, True
    ),
    "p99_ms": Target(
        "picows_p99", "fan-out p99 publish → receipt vs picows (picows ÷ JanSamvad)", 1.0, "×", True, 10_000, True
    ),
    "rss_kb_per_conn": Target(
        "picows_memory", "memory per connection vs picows (picows ÷ JanSamvad)", 1.0, "×", True, 10_000, True
    ),
}
CROSSNODE = Target(
    "crossnode", "p99 publish → receipt at 10k over 2 processes joined by Redis", 50.0, "ms", False, at_n=10_000
)


def _largest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(rows, key=lambda r: r["n"]) if rows else None


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    mem = _largest(results.get("memory", []))
    out.append(
        MEMORY.judge(mem["kb_per_conn"] if mem else None, f"N = {mem['n']:,}" if mem else "", mem["n"] if mem else 0)
    )
    bc = _largest(results.get("broadcast", []))
    out.append(
        CPU_PER_DELIVERY.judge(
            bc["cpu"]["us_per_delivery"] if bc else None, f"N = {bc['n']:,}" if bc else "", bc["n"] if bc else 0
        )
    )
    burst = _largest(results.get("burst", []))
    out.append(
        BURST.judge(
            burst["cpu"]["deliveries_per_cpu_s"] if burst else None,
            f"N = {burst['n']:,}, {burst['messages_per_round']} per tick" if burst else "",
        )
    )
    hs = results.get("handshake")
    if hs:  # the first bench's handshake, on request only since `joins` measures the citizen's real join
        out.append(HANDSHAKES.judge(hs["per_server_cpu_s_median"], "per node CPU second, one node without Redis"))
    jn = results.get("joins")
    if jn and jn["failed"]:  # a join that failed is not a cheap join: no figure to judge
        out.append({**JOINS.judge(None, ""), "status": "missed", "gap": f"{jn['failed']:,} joins failed"})
    else:
        out.append(
            JOINS.judge(
                jn["joins_per_node_cpu_s_median"] if jn else None,
                f"{jn['clients']:,} joins over 2 nodes, median of {len(jn['runs'])}" if jn else "",
                jn["clients"] if jn else 0,
            )
        )
    cross = results.get("crossnode") or {}
    lat = cross.get("latency")
    p99 = lat["latency"]["delivery_ms"].get("p99") if lat else None
    where = f"N = {lat['n']:,} over {lat['nodes']} nodes" if lat else cross.get("skipped", "")
    out.append(CROSSNODE.judge(p99, where, lat["n"] if lat else 0))
    pw = results.get("picows") or {}
    ratios = pw.get("picows_over_jansamvad") or {}
    per_node = pw.get("workload", {}).get("per_node", 0)
    for key, target in VS_PICOWS.items():
        where = f"{per_node:,} a process, medians of {len(pw.get('runs', [])) // 2} runs a side" if ratios else ""
        out.append(target.judge(ratios.get(key), where, per_node))
    return out

"""The report of `make million`: the section `## Ten lakh (issue 19)` of docs/benchmarks.md and its chart."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .million import ROOT

SECTION = "## Ten lakh (issue 19)"


def chart(result: dict[str, Any], path: Path) -> bool:
    """Memory against connections held, step by step through the ramp."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no chart", file=sys.stderr)
        return False
    samples = result["samples"]
    base = samples[0]
    xs = [s["connections"] / 1000 for s in samples]

    def gb(f: Any) -> list[float]:
        return [f(s) / 1024 / 1024 for s in samples]

    fig, (ax, ramp) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    minutes = [(s["t"] - base["t"]) / 60 for s in samples]
    ramp.plot(minutes, xs, "k-o", ms=3)
    ramp.set_xlabel("minutes since the ramp began")
    ramp.set_ylabel("connections held (thousands)")
    ramp.set_title("the ramp (2 cores: joins are CPU-bound)", fontsize=10)
    ramp.grid(alpha=0.3)
    ax.plot(
        xs,
        gb(lambda s: base["mem_available_kb"] - s["mem_available_kb"]),
        "k-o",
        ms=3,
        label="machine: MemAvailable used",
    )
    ax.plot(xs, gb(lambda s: s["node"]["pss_kb"] - base["node"]["pss_kb"]), "-s", ms=3, label="node processes (PSS)")
    ax.plot(xs, gb(lambda s: s["slab_kb"] - base["slab_kb"]), "-^", ms=3, label="kernel slab (both ends)")
    ax.plot(xs, gb(lambda s: s["client"]["pss_kb"] - base["client"]["pss_kb"]), "-v", ms=3, label="load clients (PSS)")
    floor = result["plan"]["mem_floor_mb"] / 1024
    ax.axhline(base["mem_available_kb"] / 1024 / 1024 - floor, color="red", ls=":", label="MemAvailable floor")
    ax.set_xlabel("connections held (thousands)")
    ax.set_ylabel("GB above the idle cluster")
    ax.set_title(f"Ten lakh: memory while ramping ({result['started']})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def markdown(result: dict[str, Any], chart_path: Path | None, command: str) -> str:
    r, f, c, p = result, result["figures"], result["check"], result["plan"]
    node_procs = p["node_hosts"] * p["workers"]
    client_procs = p["client_hosts"] * p["procs_per_client_host"]
    kernel_per_end = f["slab_kb_per_conn_both_ends"] / 2
    slabs = ", ".join(f"{name} {kb / 1024:.0f} MB" for name, kb in r["slab_growth_kb"][:6])
    hosts = "network namespaces" if "namespaces_fallback" not in r else f"127.x addresses ({r['namespaces_fallback']})"
    deliver = ", ".join(f"{s:.2f}" for s in c["deliver_all_s"])
    held = r["held"]
    n = max(1, c["joined_at_end"])
    proc_inodes = dict(r["slab_growth_kb"]).get("proc_inode_cache", 0) / n  # /proc entries listed: not a socket's
    per_conn = (
        f["node_pss_kb_per_conn"] + f["client_pss_kb_per_conn"] + f["slab_kb_per_conn_both_ends"] - proc_inodes
        + max(0.0, f["tcp_buffers_kb_per_conn_both_ends"]) + max(0.0, f["page_tables_kb_per_conn"])
    )  # fmt: skip
    fits = int((r["samples"][0]["mem_available_kb"] / 1024 - p["mem_floor_mb"]) * 1024 / per_conn)
    lines = [
        SECTION,
        "",
        f"`{command}` (`make million`), {r['started']}; load average before {r['loadavg_before']}, at the hold "
        f"{held['loadavg']}, after {r['loadavg_after']}. One 2-core, 24 GB machine, simulated as {hosts}: "
        f"{p['node_hosts']} node hosts × `jansamvad serve --workers {p['workers']}` ({node_procs} node processes, "
        f"`--max-connections 19000` each), a Valkey Cluster of 3 primaries (sharded pub/sub) on the bridge, "
        f"{p['client_hosts']} client hosts × {p['procs_per_client_host']} lean load-client processes "
        f"({client_procs}, `loadtest/bench/lean.py`). No L4 balancer: each client process spreads its connections "
        f"round robin over the node hosts, SO_REUSEPORT over a host's workers. Keepalive ping every "
        f"{p['ping_interval_s']:.0f} s, viewer updates every {p['presence_interval_s']:.0f} s (why below). "
        f"JSON: `loadtest/reports/million-*.json`.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| **connections held** (joined, each with its own citizen token) | **{c['joined_at_end']:,}** "
        f"(target {p['connections']:,}) |",
        f"| what stopped the ramp | {r['stopped_by']} |",
        f"| connects the node hosts' kernels refused or dropped (accept or SYN queue full, all hosts) | "
        f"{_listen_drops(r.get('listen_drops_per_host', {}))} |",
        f"| joins tried again (as the citizen page does: 503, close 1013, lost or timed out before `welcome`) | "
        f"{sum(r.get('retried', {}).values()):,} {_reasons(r.get('retried', {}))}; failed every try: "
        f"{sum(r.get('failed', {}).values()):,} {_reasons(r.get('failed', {}))} |",
        f"| **every connection got every sentence exactly once** | **{c['every_connection_every_sentence_once']}** "
        f"({p['sentences']} sentences; {c['deliveries_missing']} missing, {c['gaps']} gaps, {c['repeats']} repeats, "
        f"{c['lost_connections']} connections lost) |",
        f"| keepalive pings answered | {c['pings_answered']:,} |",
        f"| time to deliver one sentence to all (leader's send → last receipt), per sentence | {deliver} s |",
        f"| node memory per connection | **{f['node_pss_kb_per_conn']:.2f} KB** PSS "
        f"({f['node_rss_kb_per_conn']:.2f} KB RSS); idle base of the {node_procs} workers + supervisors: "
        f"{f['node_base_pss_mb']:,} MB PSS |",
        f"| kernel memory per connection, both ends | **{f['slab_kb_per_conn_both_ends']:.2f} KB** slab "
        f"({f.get('slab_unreclaimable_kb_per_conn_both_ends', 0):.2f} KB of it unreclaimable; "
        f"≈ {kernel_per_end:.2f} KB per end: both ends hold the same objects) + "
        f"{max(0.0, f['tcp_buffers_kb_per_conn_both_ends']):.2f} KB TCP buffers (idle sockets hold none) + "
        f"{max(0.0, f['page_tables_kb_per_conn']):.2f} KB page tables; slab caches grown: {slabs} |",
        f"| load-client memory per connection | **{f['client_pss_kb_per_conn']:.2f} KB** PSS "
        f"({f['client_rss_kb_per_conn']:.2f} KB RSS); idle base {f['client_base_pss_mb']:,} MB |",
        f"| machine memory per connection (MemAvailable lost / connections) | "
        f"{f['mem_available_used_kb_per_conn']:.2f} KB |",
        f"| handshakes per second, sustained over the ramp ({r['ramp_s']:.0f} s) | {f['handshakes_per_s']:,.0f} "
        f"(asked: {p['rate']:,}) |",
        f"| handshakes per node CPU-second | {f['handshakes_per_node_cpu_s']:,.0f} "
        f"({f['node_cpu_ms_per_handshake']:.2f} ms of node CPU per join; "
        f"the clients {f['client_cpu_ms_per_handshake']:.2f} ms) |",
        f"| Valkey | {f['valkey_cpu_s_ramp']:.1f} CPU-s over the ramp; {f['valkey_rss_mb']:.0f} MB RSS over "
        f"3 primaries ({f['valkey_rss_mb_before']:.0f} MB before) |",
        f"| **connections this machine holds at the floor** (the idle cluster's MemAvailable − floor, over the "
        f"measured {per_conn:.1f} KB per connection: node + kernel without /proc inodes + client) | **{fits:,}**; "
        f"a million needs {1e6 * per_conn / 1024 / 1024:.1f} GB above the idle cluster; at the measured rate its "
        f"ramp takes ~{1e6 / max(1.0, f['handshakes_per_s']) / 60:.0f} min |",
        f"| teardown | {r['teardown']['seconds']} s, clean: {r['teardown']['clean']} |",
        "",
    ]
    prof = r.get("node_profile")
    if prof and prof.get("samples"):
        top = "; ".join(f"{label} {pct} %" for label, pct in prof["self_python"][:5])
        lines += [
            f"Where a node worker's CPU went during ramp step 2 (py-spy, {prof['samples']} samples of one worker, "
            f"innermost Python function; C calls count to their caller): {top}.",
            "",
        ]
    if chart_path is not None:
        lines += [f"![memory while ramping]({chart_path.relative_to(ROOT / 'docs')})", ""]
    return "\n".join(lines)


def write_section(result: dict[str, Any], doc: Path, chart_path: Path, command: str) -> None:
    """Replace (or append) the section in `doc`; the notes under `### ` headings of an existing section are kept."""
    drawn = chart(result, chart_path if chart_path.is_absolute() else ROOT / chart_path)
    body = markdown(result, (ROOT / chart_path) if drawn else None, f"python -m loadtest.bench.million {command}")
    text = doc.read_text(encoding="utf-8")
    start = text.find(SECTION + "\n")
    if start < 0:
        doc.write_text(text.rstrip("\n") + "\n\n" + body, encoding="utf-8")
        return
    following = re.search(r"^## ", text[start + len(SECTION) :], re.M)
    end = start + len(SECTION) + following.start() if following else len(text)
    old = text[start:end]
    notes = old.find("\n### ")
    kept = old[notes:] if notes >= 0 else ""
    section = body + ("\n" + kept.strip("\n") + "\n\n" if kept else "\n")
    rest = text[end:].lstrip("\n")
    doc.write_text(text[:start] + (section if rest else section.rstrip("\n") + "\n") + rest, encoding="utf-8")


def _reasons(counts: dict[str, int]) -> str:
    """`(close_1013 12, timeout 3)`, most first; empty for none."""
    if not counts:
        return ""
    return "(" + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) + ")"


def _listen_drops(per_host: dict[str, dict[str, int]]) -> str:
    total: Counter[str] = Counter()
    for counts in per_host.values():
        total.update(counts)  # update adds and keeps zeros: a clean run reads "ListenOverflows 0, ..."
    return ", ".join(f"{k} {v:,}" for k, v in total.items()) or "not measured"

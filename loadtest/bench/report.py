"""The Markdown a run appends to docs/benchmarks.md: exact command, versions, machine, one table per scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .scenarios.vs_picows import markdown as picows_section  # the scenario renders its own table

DOC_HEADER = "# Benchmarks: the fan-out\n\n(Run log below; see loadtest/bench/README.md.)\n"


def _ms(d: dict[str, Any], *keys: str) -> str:
    return " / ".join(f"{d[k]:.1f}" if k in d else "–" for k in keys)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _kernel(cpu: dict[str, Any]) -> str:
    """utime / stime tick at 10 ms: their split means nothing for a short window."""
    return f"{cpu['system_share_pct']:.0f} %" if cpu["user_s"] + cpu["system_s"] >= 0.1 else "–"


def _lost(check: dict[str, Any]) -> str:
    bits = [f"{check['lost']:,}"]
    if check["gaps"] or check["duplicates"]:
        bits.append(f"gaps {check['gaps']}, dups {check['duplicates']}")
    if check["closes"]:
        bits.append(f"closes {check['closes']}")
    return "; ".join(bits)


def meta_section(meta: dict[str, Any]) -> str:
    v, m = meta["versions"], meta["machine"]
    lines = [
        f"### {meta['started']} — {meta['mode']} run",
        "",
        f"- Command: `{meta['command']}` (commit `{meta['commit']}`); wall time {meta['wall_s']:.0f} s.",
        f"- Node command: `{meta['server_command']}`",
        f"- Versions: Python {v['python']}, websockets {v['websockets']}, uvloop {v['uvloop']}, "
        f"msgpack {v['msgpack']}, uvicorn {v['uvicorn']}, jansamvad {v['jansamvad']}.",
        f"- Machine: `nproc` {m['nproc']}, {m['mem_gib']} GiB memory, {m['cpu_model']}, Linux {m['kernel']}, "
        f"open files {m['nofile'][0]:,} / {m['nofile'][1]:,}.",
        f"- Pinning: {meta['pinning']}.",
        f"- Load average (1/5/15 min) before: {meta['load_before']}; after: {meta['load_after']}"
        " (other engineers' test suites share this machine).",
        f"- Fan-out tick {meta['tick_ms']} ms; speech text {meta['text_bytes']} bytes; "
        f"client processes hold ≤ {meta['conns_per_worker']:,} sockets each; raw JSON: `{meta['json_path']}`.",
    ]
    return "\n".join(lines)


def targets_section(targets: list[dict[str, Any]]) -> str:
    rows = []
    for t in targets:
        measured = "–" if t["measured"] is None else f"{t['measured']:,} {t['unit']}"
        status = {"met": "**met**", "missed": "missed", "pending": "pending", "indicative": "indicative:"}[t["status"]]
        detail = {"met": "", "pending": t.get("where", "")}.get(t["status"], t.get("gap", ""))
        where = t.get("where", "") if t["status"] != "pending" else ""
        rows.append(
            [
                t["target"],
                f"{t.get('comparison') or ('≥' if t['unit'] == '/s' else '≤')} {t['limit']:,} {t['unit']}",
                measured,
                where,
                f"{status} {detail}".strip(),
            ]
        )
    return "#### Targets\n\n" + _table(["target", "limit", "measured", "where", "status"], rows)


def memory_section(rows: list[dict[str, Any]]) -> str:
    body = [
        [
            f"{r['n']:,}",
            f"{r['joined']:,}",
            r["lost"],
            f"{r['rss_before_kb'] / 1024:.1f}",
            f"{r['rss_after_kb'] / 1024:.1f}",
            f"**{r['kb_per_conn']:.2f}**",
            f"{r['join_rate_per_s']:,}",
            f"{r['tcp_buffers_kb_delta']:,}",
            f"{r.get('viewers_updates_received', 0):,}",
        ]
        for r in rows
    ]
    header = [
        "N",
        "joined",
        "lost",
        "RSS before MB",
        "RSS after MB",
        "KB / conn",
        "joins / s",
        "kernel TCP buffers Δ KB",
        "`viewers` frames sent during the join",
    ]
    return "#### 1. Memory: node RSS per idle joined connection\n\n" + _table(header, body)


def broadcast_section(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        cpu, lat = r["cpu"], r["latency"]
        body.append(
            [
                f"{r['n']:,}",
                r["messages"],
                f"{r['deliveries']:,}",
                _lost(r["check"]) + (f"; rejected {r['rejected']}" if r["rejected"] else ""),
                f"**{cpu['us_per_delivery']:.2f}**",
                f"{cpu['us_per_delivery_net_of_idle']:.2f}",
                _kernel(cpu),
                _ms(lat.get("first_receiver_ms", {}), "p50"),
                _ms(lat["last_receiver_ms"], "p50", "p99", "max"),
                _ms(lat["delivery_ms"], "p50", "p99"),
                _ms(r["publish_to_ack_ms"], "p50"),
                f"{r['client_cpu']['us_per_receipt']:.2f}",
            ]
        )
    header = [
        "N",
        "speeches",
        "deliveries",
        "lost",
        "node CPU µs / delivery",
        "net of idle",
        "kernel share",
        "publish → first receiver p50 ms",
        "publish → last receiver p50 / p99 / max ms",
        "publish → each receipt p50 / p99 ms",
        "publish → ack p50 ms",
        "client CPU µs / receipt",
    ]
    return "#### 2. Single broadcast: one speech, wait until all have it, repeat\n\n" + _table(header, body)


def burst_section(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        cpu, lat = r["cpu"], r["latency"]
        body.append(
            [
                f"{r['n']:,}",
                f"{r['messages_per_round']} × {r['rounds']}",
                f"{r['deliveries']:,}",
                _lost(r["check"]) + (f"; rejected {r['rejected']}" if r["rejected"] else ""),
                f"{r['server_writes']:,}",
                f"{cpu['us_per_delivery']:.3f}",
                f"**{cpu['deliveries_per_cpu_s']:,}**",
                f"{cpu['deliveries_per_wall_s']:,}",
                _kernel(cpu),
                _ms(lat["last_receiver_ms"], "p50", "p99"),
            ]
        )
    header = [
        "N",
        "speeches per tick × rounds",
        "deliveries",
        "lost",
        "node writes",
        "node CPU µs / delivery",
        "deliveries / node CPU-s (per core)",
        "deliveries / wall-s",
        "kernel share",
        "publish → last receiver p50 / p99 ms",
    ]
    return "#### 3. Burst: many speeches in one tick, one write per listener\n\n" + _table(header, body)


def floor_section(floors: list[dict[str, Any]], broadcasts: list[dict[str, Any]]) -> str:
    rows = []
    for fl in floors:
        same = [b for b in broadcasts if b["n"] >= fl["n"] - 10]
        engine = same[0]["cpu"]["us_per_delivery"] if same else None
        cpu, lat = fl["cpu"], fl["latency"]
        rows.append(
            [
                f"{fl['n']:,}",
                fl["clients"],
                f"{fl['deliveries']:,}",
                _lost(fl["check"]),
                f"**{cpu['us_per_delivery']:.2f}**",
                _kernel(cpu),
                "–" if engine is None else f"{engine:.2f} ({engine - cpu['us_per_delivery']:+.2f})",
                f"{fl['client_cpu']['us_per_receipt']:.2f}",
                _ms(lat["last_receiver_ms"], "p50", "p99", "max"),
            ]
        )
    header = [
        "N",
        "client processes",
        "deliveries",
        "lost",
        "floor CPU µs / delivery",
        "kernel share",
        "node µs / delivery (node − floor)",
        "client CPU µs / receipt",
        "publish → last receiver p50 / p99 / max ms",
    ]
    intro = (
        "The same clients and rounds against `loadtest/bench/floor_server.py`: one pre-framed `transport.write` per "
        "listener on uvloop and nothing else. Its cost is the floor of one write per listener on this machine's "
        "loopback; the second row puts the clients on the same core, so no write has to wake a process on the other "
        "core.\n\n"
    )
    return "#### 2b. Floor: one write per listener without the engine\n\n" + intro + _table(header, rows)


def handshake_section(hs: dict[str, Any]) -> str:
    body = [
        [
            r["rep"],
            f"{r['joined']:,}",
            r["lost"],
            r["retries"],
            f"{r['wall_s']:.2f}",
            f"{r['per_wall_s']:,}",
            f"**{r['per_server_cpu_s']:,}**",
            f"{r['server_cpu_us_per_handshake']:.0f}",
            _kernel(r["server_cpu"]),
            _ms(r["connect_ms"], "p50", "p99"),
        ]
        for r in hs["runs"]
    ]
    header = [
        "rep",
        "joined",
        "lost",
        "503 retries",
        "wall s",
        "handshakes / wall-s",
        "handshakes / node CPU-s",
        "node CPU µs each",
        "kernel share",
        "connect → welcome p50 / p99 ms",
    ]
    intro = (
        f"{hs['reps']} rep{'s' if hs['reps'] != 1 else ''} of {hs['per_rep']:,} connections "
        "(connect, upgrade, hello, welcome) from "
        f"{hs['workers']} client processes, {hs['concurrency_per_worker']} in flight each; closed between reps.\n\n"
    )
    return "#### 4b. Handshakes on one node process, without Redis (on request)\n\n" + intro + _table(header, body)


def joins_section(jn: dict[str, Any]) -> str:
    body = [
        [
            i + 1,
            f"{r['joined']:,}",
            sum(r["failed"].values()),
            f"{r['wall_s']:.2f}",
            f"{r['joins_per_wall_s']:,}",
            f"**{r['joins_per_node_cpu_s']:,}**",
            f"{r['node_cpu_us_per_join']:.1f}",
            "; ".join(f"{p['user_us_per_join']:.0f} / {p['system_us_per_join']:.0f}" for p in r["per_node"]),
            f"{r['valkey_cpu_us_per_join']:.1f}",
            r.get("machine_ref_ms") or "–",
            f"{r['load_before'].split()[0]} → {r['load_after'].split()[0]}",
        ]
        for i, r in enumerate(jn["runs"])
    ]
    header = [
        "run",
        "joined",
        "failed",
        "wall s",
        "joins / wall-s",
        "joins / node CPU-s",
        "node CPU µs each",
        "user / system µs, node A; node B",
        "Valkey µs each",
        "machine ref ms",
        "load (1 min) before → after",
    ]
    intro = (
        f"`{jn['command']}`, {len(jn['runs'])} run{'s' if len(jn['runs']) != 1 else ''}: Valkey and 2 nodes "
        "(default settings, the per-IP and handshake limits raised), a live town hall whose room grows to "
        f"{jn['clients']:,}, pre-minted citizen tokens, JSON, the hello in the subprotocol offer, an outside client "
        "(loadtest/join_client.py), unpinned. **Median: "
        f"{jn['node_cpu_us_per_join_median']:.1f} µs of node CPU per join, {jn['joins_per_node_cpu_s_median']:,} joins "
        "per node process CPU-second.**\n\n"
    )
    return "#### 4. Joins as citizens make them (loadtest/bench/joins.py)\n\n" + intro + _table(header, body)


def crossnode_section(cross: dict[str, Any]) -> str:
    title = "#### 5. Cross-node through Redis (2 nodes) and memory at 50k (3 nodes)\n\n"
    if "skipped" in cross:
        return title + f"**Pending.** {cross['skipped']}"
    lat = cross["latency"]
    rows = []
    parts = [("all", lat["n"], lat["check"], lat["latency"])]
    parts += [
        (f"node {'AB'[i] if i < 2 else i}", p["check"]["expected"] // max(1, lat["rounds"]), p["check"], p)
        for i, p in enumerate(lat["per_node"])
    ]
    for label, n, check, la in parts:
        rows.append(
            [
                label,
                f"{n:,}",
                _lost(check),
                _ms(la.get("first_receiver_ms", {}), "p50", "p99"),
                _ms(la["last_receiver_ms"], "p50", "p99", "max"),
                _ms(la["delivery_ms"], "p50", "p99"),
            ]
        )
    intro = (
        f"{lat['rounds']} speeches from a leader on node A; citizens split over {lat['nodes']} nodes, which share the "
        "machine's 2 cores with Redis and the client processes (nothing pinned).\n\n"
    )
    text = (
        title
        + intro
        + _table(
            [
                "listeners",
                "N",
                "lost",
                "publish → first receiver p50 / p99 ms",
                "publish → last receiver p50 / p99 / max ms",
                "publish → each receipt p50 / p99 ms",
            ],
            rows,
        )
    )
    mem = cross.get("memory")
    if mem and "skipped" in mem:
        text += f"\n\nMemory at 50k over 3 nodes: **pending.** {mem['skipped']}"
    elif mem:
        text += f"\n\nMemory at {mem['n']:,} over {mem['nodes']} nodes: **{mem['kb_per_conn']} KB** per connection"
        text += f" (lost {mem['lost']})."
    return text


def profile_section(prof: dict[str, Any]) -> str:
    parts = [
        f"#### Profile of the node (py-spy --native, separate pass at N = {prof['n']:,})",
        "",
        "Share of the node's busy samples. *Self (Python)*: innermost Python function, C callees included. "
        "*Self (native)*: innermost frame of any kind (libc, uvloop C, interpreter). Raw stacks: "
        "`loadtest/reports/profile-*.raw` (collapsed format, for flamegraph.pl or speedscope).",
    ]
    for phase in ("broadcast", "burst", "handshake"):
        p = prof.get(phase)
        if not p:
            continue
        n = max(len(p["self_python"]), len(p["self_native"]))
        rows = []
        for i in range(min(n, 12)):
            py = p["self_python"][i] if i < len(p["self_python"]) else ["", ""]
            nat = p["self_native"][i] if i < len(p["self_native"]) else ["", ""]
            rows.append([f"`{py[0]}`", f"{py[1]} %", f"`{nat[0]}`", f"{nat[1]} %"])
        parts += ["", f"**{phase}** ({p['samples']:,} samples)", ""]
        parts.append(_table(["self (Python)", "%", "self (native)", "%"], rows))
        if p.get("components"):
            shares = "; ".join(f"{label} {share} %" for label, share in p["components"])
            parts += ["", f"By component (disjoint, whole stacks): {shares}."]
    return "\n".join(parts)


def audio_section(audio: dict[str, Any]) -> str:
    """The audio scenario (loadtest/bench/audio.py): one row per share of listeners in audio mode."""
    rows = []
    for r in audio["runs"]:
        probes = "; ".join(
            f"{mode}: audio {p['audio_received_min']}-{p['audio_received_max']}, speech "
            f"{p['speech_received_min']}-{p['speech_received_max']}"
            for mode, p in r["probes"].items()
        )
        closed = sum(len(p["closed"]) for p in r["probes"].values())
        rows.append(
            [
                f"{r['audio_share']:.0%}",
                f"{r['listeners']:,}",
                f"{r['node_cpu_share_of_a_core']:.1%}",
                f"{r['node_cpu_us_per_listener_second']} µs",
                f"{r['egress_bytes_per_s'] / 1e6:.2f} MB/s",
                f"{r['egress_bytes_per_listener_s']:,} B/s",
                r.get("writes_per_listener_s", "-"),
                f"{r['node_rss_mb']['end']} MB" if "node_rss_mb" in r else "-",
                f"sent {r['sent']['chunks']} chunks, {r['sent']['speech']} speech; probes {probes}",
                closed,
            ]
        )
    header = [
        "in audio mode",
        "listeners",
        "node CPU",
        "CPU / listener-s",
        "egress",
        "per listener",
        "writes / listener-s",
        "node RSS",
        "delivered",
        "4009",
    ]
    return "#### Audio: a leader streaming 24 kbit/s to N listeners on one node (loadtest/bench/audio.py)\n\n" + _table(
        header, rows
    )


def render(results: dict[str, Any]) -> str:
    sections = [meta_section(results["meta"]), targets_section(results["targets"])]
    if results.get("memory"):
        sections.append(memory_section(results["memory"]))
    if results.get("anatomy"):
        a = results["anatomy"]
        sections.append(
            f"For comparison, a bare websockets `ServerProtocol` after one handshake, as the library leaves it, holds "
            f"**{a['websockets_protocol_kib']} KiB** (tracemalloc, `python -m loadtest.bench.anatomy`); "
            f"{a['headers_kib']} KiB of it are the handshake request's headers, kept alive by "
            f"{', '.join(a['request_held_by']) or '?'} unless the node lets go of them."
        )
    if results.get("broadcast"):
        sections.append(broadcast_section(results["broadcast"]))
    if results.get("burst"):
        sections.append(burst_section(results["burst"]))
    if results.get("floor"):
        sections.append(floor_section(results["floor"], results.get("broadcast", [])))
    if results.get("handshake"):
        sections.append(handshake_section(results["handshake"]))
    if results.get("joins"):
        sections.append(joins_section(results["joins"]))
    if results.get("crossnode"):
        sections.append(crossnode_section(results["crossnode"]))
    if results.get("audio"):
        sections.append(audio_section(results["audio"]))
    if results.get("picows"):
        sections.append(picows_section(results["picows"]))
    if results.get("profile"):
        sections.append(profile_section(results["profile"]))
    if results.get("errors"):
        lines = "\n".join(f"- {e['where']}: `{e['error']}`" for e in results["errors"])
        sections.append("#### Steps that failed\n\n" + lines)
    charts = results["meta"].get("charts")
    if charts:
        sections.append("Charts: " + ", ".join(f"`{c}`" for c in charts))
    return "\n\n".join(sections) + "\n"


def append(doc: Path, section: str) -> None:
    text = doc.read_text() if doc.exists() else DOC_HEADER
    if not text.endswith("\n"):
        text += "\n"
    doc.write_text(text + "\n" + section)

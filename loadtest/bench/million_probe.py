"""What `make million` reads from the kernel: a process tree's memory and CPU, the machine's memory, slab caches."""

from __future__ import annotations

import os
from pathlib import Path

from . import procstat

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def children(pid: int) -> list[int]:
    """Direct children of `pid` (a `serve --workers` supervisor's workers)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def memory_kb(pids: list[int]) -> dict[str, int]:
    """Summed RSS and PSS (shared pages split among their users: what the processes really add) in KiB."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return {"rss_kb": rss, "pss_kb": pss}


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += procstat.cpu(pid).seconds
        except OSError:
            continue
    return total


def meminfo_kb() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        out[name] = int(rest.split()[0])
    return out


def sockstat(netns_pid: int | None = None) -> dict[str, int]:
    """TCP sockets in use (of the namespace of `netns_pid`, else ours) and the machine's TCP buffer pages in KiB."""
    path = Path(f"/proc/{netns_pid}/net/sockstat") if netns_pid else Path("/proc/net/sockstat")
    try:
        text = path.read_text()
    except OSError:
        return {"inuse": 0, "mem_kb": 0}
    for line in text.splitlines():
        if line.startswith("TCP:"):
            parts = line.split()
            return {"inuse": int(parts[2]), "mem_kb": int(parts[parts.index("mem") + 1]) * PAGE_KB}
    return {"inuse": 0, "mem_kb": 0}


def listen_drops(netns_pid: int) -> dict[str, int]:
    """The namespace's counts of connections its listening sockets refused or dropped (full accept queue, full SYN
    queue): where a connect that never reached the node's code went."""
    try:
        lines = Path(f"/proc/{netns_pid}/net/netstat").read_text().splitlines()
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], (int(v) for v in values.split()[1:]), strict=False))
            wanted = ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPBacklogDrop")
            return {k: table.get(k, 0) for k in wanted}
    return {}


def slabs_kb() -> dict[str, int]:
    """Every slab cache's size (active objects × object size) in KiB; empty without permission."""
    out: dict[str, int] = {}
    try:
        lines = Path("/proc/slabinfo").read_text().splitlines()[2:]
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        out[parts[0]] = int(parts[1]) * int(parts[3]) // 1024
    return out


def slab_growth(before: dict[str, int], after: dict[str, int], top: int = 10) -> list[tuple[str, int]]:
    grown = [(name, after[name] - before.get(name, 0)) for name in after]
    return sorted((g for g in grown if g[1] > 0), key=lambda g: -g[1])[:top]

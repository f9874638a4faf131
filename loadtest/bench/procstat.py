"""What the kernel says about a process and the machine: RSS, CPU time, TCP memory, load, versions."""

from __future__ import annotations

import os
import platform
import resource
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    """VmRSS from /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass(frozen=True)
class CpuSample:
    user_s: float  # utime from /proc/<pid>/stat (clock-tick resolution)
    system_s: float  # stime
    sched_ns: int  # time on a CPU, all threads, from /proc/<pid>/task/*/schedstat (nanosecond resolution)

    def __sub__(self, other: CpuSample) -> CpuSample:
        return CpuSample(self.user_s - other.user_s, self.system_s - other.system_s, self.sched_ns - other.sched_ns)

    @property
    def seconds(self) -> float:
        """CPU seconds: the nanosecond schedstat clock when there is one, else utime + stime."""
        return self.sched_ns / 1e9 if self.sched_ns else self.user_s + self.system_s

    def as_dict(self) -> dict[str, float]:
        return {"user_s": round(self.user_s, 3), "system_s": round(self.system_s, 3), "cpu_s": round(self.seconds, 4)}


def cpu(pid: int) -> CpuSample:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 (state) is fields[0]
    utime, stime = int(fields[11]), int(fields[12])
    sched = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            sched += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError):
        sched = 0
    return CpuSample(utime / CLK_TCK, stime / CLK_TCK, sched)


def tcp_mem_kb() -> int:
    """Kernel memory held by TCP socket buffers machine-wide (/proc/net/sockstat `mem`, in pages), in KiB."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            parts = line.split()
            return int(parts[parts.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return 0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> dict[str, object]:
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "nofile": [soft, hard],
    }


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for package in ("jansamvad", "websockets", "uvloop", "msgpack", "uvicorn", "PyJWT"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "-"
    return out

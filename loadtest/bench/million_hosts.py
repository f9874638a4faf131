"""Simulated hosts for `make million`: one network namespace per "host", each with its own address on one bridge.

    switch:         namespace <prefix>sw holding the bridge br0, every host's veth plugged into it
    root namespace: veth <prefix>rt on the bridge, 10.<net>.0.1/16 (the Valkey "host": Valkey listens here)
    node host i:    namespace <prefix>n<i>, veth on the bridge, 10.<net>.1.<i+1>
    client host j:  namespace <prefix>c<j>, veth on the bridge, 10.<net>.2.<j+1>, ephemeral ports 1024-65535

The bridge sits in a namespace of its own, not in the root one: with br_netfilter loaded, a bridge in the root
namespace hands every bridged packet to the root namespace's iptables and conntrack (here: an entry per connection,
and a table capped at nf_conntrack_max = 262,144), which a million connections would fill. The switch namespace has
no rules, so client-to-node traffic is switched without conntrack; only the node-to-Valkey connections cross into
the root namespace.

Every name starts with the run's prefix, so a cleanup (at start, at the end, and after a crash) removes exactly what
an earlier run of the same scenario left: the processes inside its namespaces (listed by `ip netns pids`, killed by
PID), the namespaces, the veths and the bridge. Without root or without `ip`, `Hosts.loopback()` gives every host a
127.x address in the root namespace instead (the same processes, no isolation).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

IP_TIMEOUT_S = 10.0


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=check)


def namespaces_usable() -> str | None:
    """None when this process may create network namespaces, else the reason why not."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"jsmprobe{os.getpid() % 100000}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Host:
    name: str  # namespace name ("" in loopback mode)
    address: str

    def wrap(self, argv: list[str]) -> list[str]:
        """The command run inside this host's namespace (as is in loopback mode)."""
        return ["ip", "netns", "exec", self.name, *argv] if self.name else argv


@dataclass
class Hosts:
    prefix: str
    net: int  # second octet of 10.<net>.0.0/16
    namespaces: bool
    gateway: str = ""  # the root namespace's address on the bridge (Valkey listens there)
    nodes: list[Host] = field(default_factory=list)
    clients: list[Host] = field(default_factory=list)

    @classmethod
    def loopback(cls, prefix: str, net: int, node_hosts: int, client_hosts: int) -> Hosts:
        hosts = cls(prefix, net, namespaces=False, gateway="127.0.0.1")
        hosts.nodes = [Host("", f"127.{net}.1.{i + 1}") for i in range(node_hosts)]
        hosts.clients = [Host("", f"127.{net}.2.{j + 1}") for j in range(client_hosts)]
        return hosts

    @classmethod
    def create(cls, prefix: str, net: int, node_hosts: int, client_hosts: int) -> Hosts:
        """Clean what an earlier run left, then make the bridge and every namespace (undo with `destroy`)."""
        cleanup(prefix)
        hosts = cls(prefix, net, namespaces=True, gateway=f"10.{net}.0.1")
        switch = f"{prefix}sw"
        _ip("netns", "add", switch)
        _ip("-n", switch, "link", "set", "lo", "up")
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        root_veth = f"{prefix}rt"
        _ip("link", "add", root_veth, "type", "veth", "peer", "name", "rt", "netns", switch)
        _ip("addr", "add", f"{hosts.gateway}/16", "dev", root_veth)
        _ip("link", "set", root_veth, "up")
        _ip("-n", switch, "link", "set", "rt", "master", "br0", "up")
        for kind, count, third, out in (("n", node_hosts, 1, hosts.nodes), ("c", client_hosts, 2, hosts.clients)):
            for i in range(count):
                host = Host(f"{prefix}{kind}{i}", f"10.{net}.{third}.{i + 1}")
                hosts._add(host, switch, f"{kind}{i}")
                out.append(host)
        return hosts

    def _add(self, host: Host, switch: str, port: str) -> None:
        _ip("netns", "add", host.name)
        _ip("-n", switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.name)
        _ip("-n", switch, "link", "set", port, "master", "br0", "up")
        inside = ["ip", "netns", "exec", host.name]
        for argv in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", f"{host.address}/16", "dev", "eth0"],
            ["ip", "link", "set", "eth0", "up"],
            # A client host opens ~100k connections: the whole port range (per namespace), never exhausted.
            ["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65535"],
            ["sysctl", "-q", "-w", "net.core.somaxconn=65535"],
            ["sysctl", "-q", "-w", "net.ipv4.tcp_max_syn_backlog=65535"],
        ):
            subprocess.run([*inside, *argv], check=True, capture_output=True, timeout=IP_TIMEOUT_S)

    def destroy(self) -> dict[str, int]:
        return cleanup(self.prefix) if self.namespaces else {"namespaces": 0, "killed": 0}


def ours(prefix: str) -> list[str]:
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    return [line.split()[0] for line in listed if line.startswith(prefix)]


def cleanup(prefix: str, wait_s: float = 10.0) -> dict[str, int]:
    """Kill every process inside our namespaces (by PID), delete them and the bridge; what was there is counted."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        return {"namespaces": 0, "killed": 0}
    names = ours(prefix)
    pids = {int(p) for name in names for p in _ip("netns", "pids", name, check=False).stdout.split()}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait_s
    while any(os.path.exists(f"/proc/{pid}") and not _zombie(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for name in names:
        _ip("netns", "del", name, check=False)  # takes its veths with it, and so their other ends
    _ip("link", "del", f"{prefix}rt", check=False)
    return {"namespaces": len(names), "killed": len(pids)}


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True

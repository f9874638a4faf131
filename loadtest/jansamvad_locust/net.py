"""Addresses: the WebSocket URL of a node, and the loopback source address of each simulated citizen.

No locust import (unit-tested in tests/loadtest/).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def ws_url(host: str) -> str:
    """http(s)://host:port -> ws(s)://host:port/ws: one port serves the REST API and the WebSocket."""
    base = host.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + "/ws"
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :] + "/ws"
    return base + "/ws"


def source_ip(url: str, index: int, per_ip: int, process: int) -> str | None:
    """The local address the `index`-th citizen of this process connects from, or None for the default.

    Every simulated citizen of a load machine shares one IP, so the node's per-IP limits (connections, questions per
    minute) would throttle the whole crowd as if it were one household. On loopback we can do better: all of
    127.0.0.0/8 is ours, so `per_ip` citizens share each address, as a few phones behind one mobile carrier NAT do.
    127.<100 + process>.x.y keeps the locust processes on one machine apart (and away from the bench's 127.1.x.y…).
    """
    try:
        address = ipaddress.ip_address(urlsplit(url).hostname or "")
    except ValueError:
        return None  # a name, not an address: a real deployment, where the source address is what it is
    if not (address.version == 4 and address.is_loopback) or per_ip <= 0:
        return None
    slot = index // per_ip
    return f"127.{100 + process % 100}.{slot // 250 % 256}.{slot % 250 + 1}"

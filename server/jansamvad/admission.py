"""Admission that fits Indian mobile networks: who counts as "one client address", and per-address token buckets.

Carriers put thousands of phones behind one IPv4 address (CGNAT) and a booth's Wi-Fi puts a whole gathering behind
one, so an IPv4 address is a network, not a person. IPv6 is the other way round: one phone or home gets a whole /64
(often a /56) and may use a fresh address from it for every connection, so an IPv6 address is less than a person and
limits count its prefix instead. The person is the token's subject (the device identity the join minted), and the
node limits questions, votes and sessions per subject; per network it only bounds what needs no valid token
(handshakes, connections that have not joined yet, failed joins). docs/operations.md, "Admission and CGNAT".
"""

from __future__ import annotations

import ipaddress

from jansamvad.token_bucket import TokenBucket


def network_key(ip: str, ipv6_prefix: int) -> str:
    """The key per-address limits count: an IPv4 address as it is, an IPv6 address as its /ipv6_prefix network
    ("2001:db8:1:2::/64"); an IPv4-mapped IPv6 address (a dual-stack listener) as the IPv4 address."""
    if ":" not in ip:
        return ip  # IPv4 (or empty): the common case costs nothing
    try:
        address = ipaddress.IPv6Address(ip.partition("%")[0])
    except ValueError:
        return ip
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))


class NetworkBuckets:
    """A token bucket per network key, created full on first use. Full buckets are forgotten now and then (a full
    bucket and a missing one behave the same), so the dict holds only networks active in the last burst / rate s."""

    __slots__ = ("_buckets", "_burst", "_prune_at", "_rate")

    def __init__(self, rate: float, burst: float) -> None:
        self._rate, self._burst = rate, burst
        self._buckets: dict[str, TokenBucket] = {}
        self._prune_at = 1024

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> float:
        """Take one token for `key`: 0.0, or the seconds until it has one (nothing taken then)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._prune_at:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self._rate, self._burst, now)
        return bucket.take(now)

    def wait(self, key: str, now: float) -> float:
        """The seconds until `key` has a token (0.0: it has one now), without taking it."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self._rate

    def _prune(self, now: float) -> None:
        """Drop the buckets that have refilled; amortised: runs again only once the dict has doubled."""
        full = [key for key, b in self._buckets.items() if b.tokens + (now - b.at) * self._rate >= self._burst]
        for key in full:
            del self._buckets[key]
        self._prune_at = max(1024, 2 * len(self._buckets))

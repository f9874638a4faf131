"""Redis URLs: which schemes a node accepts (standalone, TLS, unix socket, or a cluster said up front), their check
with a clear message for the settings, and the URL without its password for messages and logs.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

# `redis+cluster://` says "cluster" up front; the client itself is given the plain scheme.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def check_url(url: str) -> None:
    """Raise ValueError with a clear message when `url` is not a Redis URL a node can use."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ValueError(f"Redis URL must start with one of {', '.join(s + '://' for s in SCHEMES)}")
    if scheme in CLUSTER_SCHEMES and urlsplit(url).path.strip("/") not in ("", "0"):
        raise ValueError("a Redis cluster has only database 0")

"""Real Redis-protocol servers for tests (the implementation is jansamvad.localredis, shared with the launcher)."""

from jansamvad.localredis import (
    Cluster,
    RedisServer,
    free_port,
    server_binary,
    start_cluster,
    start_standalone,
)

__all__ = ["Cluster", "RedisServer", "free_port", "server_binary", "start_cluster", "start_standalone"]

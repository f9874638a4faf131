"""What goes wrong talking to Redis, sorted into "cannot serve now" (RedisUnavailable: the caller answers
`unavailable` and the client retries) and bugs, which surface as they are.

Apart from redis_conn.py so that the broker's reader and the limiter can tell the two apart without the connection.
"""

from __future__ import annotations

from redis.exceptions import (
    ClusterDownError,
    ConnectionError as RedisConnectionError,
    ReadOnlyError,
    RedisClusterException,
    TimeoutError as RedisTimeoutError,
    TryAgainError,
)

# Errors that mean "Redis cannot serve this now" rather than "this request is wrong". A read-only replica answers
# writes during a failover; a cluster answers CLUSTERDOWN / TRYAGAIN while slots move.
UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    RedisClusterException,
)


TRANSPORT_RACE = (TypeError, AttributeError, RuntimeError)


class RedisUnavailable(ConnectionError):
    """Redis cannot be reached or cannot serve now; the caller answers `unavailable` and the client retries."""


def transport_race(exc: BaseException) -> bool:
    """A write to a connection the peer just closed, misreported by redis-py (redis/redis-py#4287, #3546).

    The transport then raises TypeError or AttributeError (asyncio: its internals are already torn down) or
    RuntimeError (uvloop: "the handler is closed") instead of ConnectionError, and redis-py lets it through. Seen
    here when a cluster primary restarts under load. They are recognised by where they were raised, so that our
    own errors of these types still surface as the bugs they are.
    """
    if not isinstance(exc, TRANSPORT_RACE):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return any(part in filename for part in ("/redis/", "/asyncio/", "uvloop/"))  # uvloop: its .pyx sources

"""How `build_node` turns the Redis settings into the broker's deadlines (no Redis needed: nothing connects)."""

from __future__ import annotations

from jansamvad.broker.redis import RedisBroker
from jansamvad.server import build_node
from tests.helpers import node_settings


def test_server_redis_subscriber_gives_up_after_three_command_timeouts_never_under_three_seconds() -> None:
    for command_timeout_s, dead_after_s in ((0.2, 3.0), (1.0, 3.0), (10.0, 30.0)):
        settings = node_settings(redis_url="redis://127.0.0.1:9/0", redis_command_timeout_s=command_timeout_s)
        broker = build_node(settings).broker
        assert isinstance(broker, RedisBroker)
        # A CPU-starved cluster (the million run: ~130 processes on 2 cores) raises the command timeout; its
        # subscribers must not be torn down after 3 s of a Valkey that is waiting for a CPU, not dead.
        assert broker.dead_after_s == dead_after_s

"""locust users for JanSamvad: citizens, moderators and a leader speaking protocol v1 over plain WebSockets (msgpack).

    make loadtest SCENARIO=townhall USERS=500 DURATION=60s      # starts a local node, runs headless, judges the run
    .venv/bin/locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --admin-key KEY   # web UI, any node

Scenarios, options, statistics and distributed runs: loadtest/README.md. The code is in jansamvad_locust/ beside this
file (locust puts this directory on sys.path).
"""

from jansamvad_locust import hooks  # noqa: F401  (registers the command-line options and event listeners)
from jansamvad_locust.shape import ScenarioShape
from jansamvad_locust.users import CitizenUser, LeaderUser, ModeratorUser, ScreenUser

__all__ = ["CitizenUser", "LeaderUser", "ModeratorUser", "ScenarioShape", "ScreenUser"]

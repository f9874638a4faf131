"""The locust load test's plain modules live in loadtest/ (a folder locust puts on sys.path, not a package): put it
on sys.path here too. Only modules that import neither locust nor gevent are imported into this process; the
end-to-end run starts locust as a subprocess (locust monkey-patches the standard library with gevent on import)."""

from __future__ import annotations

import sys
from pathlib import Path

LOADTEST = Path(__file__).resolve().parents[2] / "loadtest"
if str(LOADTEST) not in sys.path:
    sys.path.insert(0, str(LOADTEST))

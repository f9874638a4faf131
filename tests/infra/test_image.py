"""The node image, built and run for real: infra/ci/image-smoke.sh with podman (installed by .ci/run).

The script makes the Debian base image (once per machine: it stays in podman's store), builds
infra/docker/Dockerfile unchanged, starts a container and drives it from outside (infra/ci/smoke.py). This test
runs it and checks that every step was seen; it skips only when no container engine is installed, and fails instead
when REQUIRE_CONTAINER_ENGINE=1 (set by .ci/run once it has installed podman).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "infra" / "ci" / "image-smoke.sh"
SKIP = 77  # the script's "no engine" status (automake's convention for a skipped test)

# What the script and smoke.py print once each check passed, in order.
CHECKS = [
    "image-smoke: built",
    "ok: /healthz answers 200",
    "ok: /readyz answers 200",
    "ok: the image's HEALTHCHECK passes",
    "ok: the container's processes run as jansamvad (not root)",
    "made over the REST API",
    "ok: citizen and leader joined over WebSocket",
    "reached the citizen",
    "close 1012",
    "ok: the container stopped on SIGTERM after an orderly shutdown",
    "image-smoke: passed",
]


def engine_missing_reason() -> str | None:
    missing = [tool for tool in ("podman", "mmdebstrap") if shutil.which(tool) is None]
    if not missing:
        return None
    reason = f"{' and '.join(missing)} not installed (apt-get install podman runc mmdebstrap; .ci/run does)"
    if os.environ.get("REQUIRE_CONTAINER_ENGINE") == "1":
        pytest.fail(f"REQUIRE_CONTAINER_ENGINE=1 but {reason}")
    return reason


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_image_builds_and_serves_a_town_hall_end_to_end() -> None:
    reason = engine_missing_reason()
    if reason:
        pytest.skip(reason)
    # The first run on a machine builds the base image (about a minute) and the node image (about half a minute).
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable, "SMOKE_CONTAINER": "jansamvad-test-image-smoke"},
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode == SKIP:
        pytest.skip(output.strip())
    assert result.returncode == 0, output
    position = 0
    for check in CHECKS:
        found = result.stdout.find(check, position)
        assert found >= 0, f"missing or out of order: {check!r}\n{output}"
        position = found
    gone = subprocess.run(["podman", "container", "exists", "jansamvad-test-image-smoke"], check=False)
    assert gone.returncode == 1, "the smoke test's container was left behind"

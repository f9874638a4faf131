"""Checks a running JanSamvad container end to end, from outside, as a deployment would be used.

    python infra/ci/smoke.py --base http://127.0.0.1:8000 --admin-key KEY --container jansamvad-smoke

Called by infra/ci/image-smoke.sh once the container is started. Prints one `ok: ...` line per check and exits 1 at
the first failure: /healthz, /readyz, the image's HEALTHCHECK, the process's user, a town hall made over the REST
API, a citizen and the leader joining over WebSocket, a speech reaching the citizen, and a clean stop (SIGTERM:
`reconnect`, close 1012, the node's orderly stop). Needs only the standard library, websockets and a container
engine CLI (podman, or docker with --engine docker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

JSON = Subprotocol("jansamvad.v1.json")
TIMEOUT_S = 10.0


class SmokeError(Exception):
    """A check failed; the message says which and what was seen."""


def http(base: str, method: str, path: str, body: dict[str, Any] | None = None, key: str = "") -> tuple[int, Any]:
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None)
    request.add_header("content-type", "application/json")
    if key:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def wait_for(base: str, path: str, deadline_s: float) -> None:
    """Polls until the path answers 200: the container needs a moment to start the node."""
    end = time.monotonic() + deadline_s
    last = ""
    while time.monotonic() < end:
        try:
            status, _ = http(base, "GET", path)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as error:  # not listening yet
            last = str(error)
        time.sleep(0.5)
    raise SmokeError(f"{path} did not answer 200 within {deadline_s:.0f} s (last: {last})")


def engine(args: argparse.Namespace, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([args.engine, *command], capture_output=True, text=True, timeout=60, check=False)


async def recv(ws: ClientConnection, want: str) -> dict[str, Any]:
    """The next message of type `want`, skipping conflated aggregates and events of no interest."""
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message.get("t") == "error":
                raise SmokeError(f"waiting for {want}: node answered {message}")
            if message.get("t") == want:
                return message


async def join(ws_url: str, token: str) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(ws_url, subprotocols=[JSON], open_timeout=TIMEOUT_S)
    await ws.send(json.dumps({"t": "hello", "token": token}))
    return ws, await recv(ws, "welcome")


async def town_hall(args: argparse.Namespace) -> None:
    base = args.base.rstrip("/")
    status, hall = http(base, "POST", "/api/townhalls", {"title": "स्मोक टेस्ट टाउन हॉल"}, args.admin_key)
    if status != 201:
        raise SmokeError(f"POST /api/townhalls: HTTP {status} {hall}")
    th = hall["id"]
    status, leader = http(base, "POST", f"/api/townhalls/{th}/tokens", {"role": "leader"}, args.admin_key)
    if status != 201:
        raise SmokeError(f"leader token: HTTP {status} {leader}")
    status, citizen = http(base, "POST", f"/api/townhalls/{th}/join", {"name": "सीता", "region": "Patna"})
    if status != 201:
        raise SmokeError(f"citizen join: HTTP {status} {citizen}")
    print(f"ok: town hall {th} made over the REST API, leader and citizen tokens issued", flush=True)

    ws_url = "ws" + base.removeprefix("http") + "/ws"
    listener, welcome = await join(ws_url, citizen["token"])
    if welcome.get("role") != "citizen" or welcome.get("th") != th:
        raise SmokeError(f"citizen welcome: {welcome}")
    leader_ws, _ = await join(ws_url, leader["token"])
    print("ok: citizen and leader joined over WebSocket", flush=True)

    await leader_ws.send(json.dumps({"t": "go_live", "id": 1}))
    await recv(leader_ws, "ack")
    text = "नमस्ते, यह कंटेनर से बोल रहा हूँ"
    await leader_ws.send(json.dumps({"t": "speech", "id": 2, "text": text, "key": "smoke-speech-1"}))
    ack = await recv(leader_ws, "ack")
    heard = await recv(listener, "speech")
    if heard.get("text") != text or heard.get("seq") != ack.get("seq"):
        raise SmokeError(f"speech: acked {ack}, citizen heard {heard}")
    print(f"ok: the leader's speech (seq {ack['seq']}) reached the citizen", flush=True)

    # A clean stop: SIGTERM to the container (tini forwards it to the node), which drains its sessions.
    stop = engine(args, "kill", "--signal", "TERM", args.container)
    if stop.returncode != 0:
        raise SmokeError(f"{args.engine} kill --signal TERM: {stop.stderr.strip()}")
    hint = await recv(listener, "reconnect")
    try:
        async with asyncio.timeout(TIMEOUT_S + 10):
            async for _ in listener:
                pass
    except ConnectionClosed:
        pass
    code = listener.close_code
    if code != 1012:
        raise SmokeError(f"after SIGTERM the citizen's connection closed with {code}, not 1012")
    print(f"ok: SIGTERM drained the citizen: reconnect after {hint['after_ms']} ms, close {code}", flush=True)
    await leader_ws.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the node's published address, http://127.0.0.1:PORT")
    parser.add_argument("--admin-key", required=True)
    parser.add_argument("--container", required=True, help="the container's name")
    parser.add_argument("--engine", default="podman")
    parser.add_argument("--start-timeout", type=float, default=60.0)
    args = parser.parse_args()
    base = args.base.rstrip("/")
    try:
        wait_for(base, "/healthz", args.start_timeout)
        print("ok: /healthz answers 200", flush=True)
        wait_for(base, "/readyz", args.start_timeout)
        print("ok: /readyz answers 200", flush=True)
        health = engine(args, "healthcheck", "run", args.container) if args.engine == "podman" else None
        if health is not None and health.returncode != 0:
            raise SmokeError(f"the image's HEALTHCHECK failed: {health.stdout.strip()} {health.stderr.strip()}")
        print("ok: the image's HEALTHCHECK passes", flush=True)
        user = engine(args, "top", args.container, "user", "comm")
        users = {line.split()[0] for line in user.stdout.splitlines()[1:] if line.strip()}
        if user.returncode != 0 or not users or "root" in users or "0" in users:
            raise SmokeError(f"processes in the container run as {users or user.stderr.strip()}, expected uid 10001")
        print(f"ok: the container's processes run as {', '.join(sorted(users))} (not root)", flush=True)
        asyncio.run(town_hall(args))
        deadline = time.monotonic() + 30
        state = ""
        while time.monotonic() < deadline:
            inspect = engine(args, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", args.container)
            state = inspect.stdout.strip()
            if state.startswith("exited"):
                break
            time.sleep(0.5)
        # 143 = 128 + SIGTERM: uvicorn re-raises the signal once its shutdown is complete, and tini passes the
        # status on. 137 (SIGKILL) would mean the drain outlived the stop timeout.
        if state not in {"exited 0", "exited 143"}:
            raise SmokeError(f"after SIGTERM the container is '{state}', expected 'exited 0' or 'exited 143'")
        logs = engine(args, "logs", args.container)
        if "stopped" not in logs.stdout + logs.stderr:
            raise SmokeError("the node did not log its orderly stop ('node ... stopped')")
        print(f"ok: the container stopped on SIGTERM after an orderly shutdown ({state})", flush=True)
    except SmokeError as error:
        print(f"FAIL: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A JanSamvad node as a child process started with the real CLI (`jansamvad serve`), and its REST API."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jansamvad.localredis import free_port

from . import procstat
from .children import die_with_parent

STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0


class ServerFailed(RuntimeError):
    """The node did not come up; the message carries the end of its log."""


def jansamvad_command() -> list[str]:
    script = Path(sys.executable).with_name("jansamvad")
    return [str(script)] if script.exists() else [sys.executable, "-m", "jansamvad"]


@dataclass
class ServerConfig:
    secret: str
    admin_key: str
    log_path: Path
    port: int = 0
    max_connections: int = 19_900
    tick_ms: float = 5.0
    cpu: int | None = None  # pin the node to this core with taskset
    redis_url: str | None = None
    extra: list[str] = field(default_factory=list)

    def argv(self) -> list[str]:
        argv = [
            *jansamvad_command(),
            "serve",
            "--port",
            str(self.port),
            "--secret",
            self.secret,
            "--admin-key",
            self.admin_key,
            "--log-level",
            "warning",
            "--max-connections",
            str(self.max_connections),
            # Admission control is raised out of the way: the bench measures the engine, not the limits.
            "--max-connections-per-ip",
            "100000",
            "--max-unjoined-per-ip",
            "100000",
            "--ip-handshakes-per-second",
            "1000000",
            "--ip-handshake-burst",
            "1000000",
            "--handshakes-per-second",
            "1000000",
            "--hello-timeout",
            "60",
            # Keepalive pings are a separate, periodic cost; keep them out of the measured windows.
            "--ping-interval",
            "600",
            "--ping-timeout",
            "60",
            "--tick-ms",
            str(self.tick_ms),
            *self.extra,
        ]
        if self.redis_url:
            argv += ["--redis-url", self.redis_url]
        if self.cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(self.cpu), *argv]
        return argv


class ServerProcess:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        if not config.port:
            config.port = free_port()
        self.port = config.port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid  # taskset execs the node in place, so this is the node's own pid

    def command(self) -> str:
        """The command line as a human would type it (secret and admin key elided)."""
        argv = self.config.argv()
        shown = []
        for i, arg in enumerate(argv):
            shown.append(
                "$SECRET" if argv[i - 1] == "--secret" else "$ADMIN_KEY" if argv[i - 1] == "--admin-key" else arg
            )
        return " ".join(shown).replace(str(Path(sys.executable).parent) + "/", ".venv/bin/")

    async def start(self) -> None:
        self.config.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.config.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.config.argv(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"node exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                await self.get("/healthz")
                return
            except (OSError, urllib.error.URLError):
                await asyncio.sleep(0.1)
        await self.stop()
        raise ServerFailed(f"node not healthy after {STARTUP_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.config.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 5)

    # /proc

    def rss_kb(self) -> int:
        return procstat.rss_kb(self.pid)

    def cpu(self) -> procstat.CpuSample:
        return procstat.cpu(self.pid)

    # HTTP

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None, admin: bool = False) -> Any:
        headers = {"content-type": "application/json"}
        if admin:
            headers["authorization"] = f"Bearer {self.config.admin_key}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)

        def call() -> Any:
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                if exc.code == 503 and path == "/readyz":
                    return json.loads(exc.read())
                raise

        return await asyncio.to_thread(call)

    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def stats(self) -> dict[str, Any]:
        """The node's own counters (connections, broadcast_writes, frames_built, ...) from /readyz."""
        result: dict[str, Any] = await self.get("/readyz")
        return result

    async def create_townhall(self, title: str) -> str:
        townhall = await self.request("POST", "/api/townhalls", {"title": title, "lang": "hi"}, admin=True)
        return str(townhall["id"])

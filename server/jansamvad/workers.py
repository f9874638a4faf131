"""`jansamvad serve --workers N`: N node processes on one port (SO_REUSEPORT), joined by Redis, under one supervisor.

The kernel spreads new connections over the workers' listening sockets. Each worker is a whole node (its own event
loop, hub and fan-out); they share town halls, history and presence through Redis, so a client may land on any of
them and resume there. The supervisor restarts a worker that dies (with a growing delay) and, on SIGTERM or SIGINT,
passes SIGTERM on: each worker drains (tells its clients to reconnect after a jittered delay, closes with 1012) and
exits; the supervisor waits for them up to a deadline, then kills what is left.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from jansamvad.server import run_node
from jansamvad.settings import Settings, SettingsError

log = logging.getLogger("jansamvad.workers")

RESTART_DELAY_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # after 1, 2, 3 ... quick deaths in a row
QUICK_DEATH_S = 30.0  # a worker that ran longer than this has its restart count reset
STOP_GRACE_S = 30.0  # how long workers get to drain after SIGTERM


def worker_settings(settings: Settings, index: int) -> Settings:
    base = settings.node_id or f"node-{os.uname().nodename}-{os.getpid()}"
    return dataclasses.replace(settings, node_id=f"{base}-w{index}")


def _worker_main(settings: Settings, index: int, demo: bool, loop: str, log_format: str) -> None:
    from jansamvad.logs import configure

    mine = worker_settings(settings, index)
    configure(mine.log_level, log_format, mine.node_id)
    run_node(mine, demo=demo and index == 0, loop=loop, reuse_port=True)


class Supervisor:
    def __init__(self, settings: Settings, workers: int, *, demo: bool, loop: str, log_format: str = "text") -> None:
        if workers > 1 and not settings.redis_url:
            raise SettingsError("--workers above 1 needs --redis-url: workers share town halls through Redis")
        self.settings = settings
        self.count = workers
        self.demo = demo
        self.loop = loop
        self.log_format = log_format
        self._context = multiprocessing.get_context("spawn")
        self._procs: dict[int, BaseProcess] = {}
        self._started: dict[int, float] = {}
        self._quick_deaths: dict[int, int] = {}
        self._stopping = False

    def _start(self, index: int) -> None:
        proc = self._context.Process(
            target=_worker_main,
            args=(self.settings, index, self.demo, self.loop, self.log_format),
            name=f"jansamvad-worker-{index}",
            daemon=False,
        )
        proc.start()
        self._procs[index] = proc
        self._started[index] = time.monotonic()
        log.info("worker %d started (pid %s)", index, proc.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for index in range(self.count):
            self._start(index)
        pending_restart: dict[int, float] = {}
        while not self._stopping:
            time.sleep(0.2)
            now = time.monotonic()
            for index, proc in list(self._procs.items()):
                if proc.is_alive() or index in pending_restart:
                    continue
                ran = now - self._started[index]
                deaths = 0 if ran > QUICK_DEATH_S else self._quick_deaths.get(index, 0) + 1
                self._quick_deaths[index] = deaths
                delay = RESTART_DELAY_S[min(deaths, len(RESTART_DELAY_S) - 1)]
                log.warning(
                    "worker %d exited with %s after %.1f s; restarting in %.1f s", index, proc.exitcode, ran, delay
                )
                pending_restart[index] = now + delay
            for index, at in list(pending_restart.items()):
                if now >= at and not self._stopping:
                    del pending_restart[index]
                    self._start(index)
        return self.stop()

    def stop(self) -> int:
        for proc in self._procs.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self._procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
        killed = 0
        for proc in self._procs.values():
            if proc.is_alive():
                proc.kill()
                proc.join()
                killed += 1
        log.info("all workers stopped (%d killed at the deadline)", killed)
        return 1 if killed else 0

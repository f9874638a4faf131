"""The orchestrator's handle on its client worker processes (worker.py), optionally pinned to one core."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from . import procstat
from .children import die_with_parent
from .procstat import CpuSample

REPO = Path(__file__).resolve().parents[2]
CALL_MARGIN_S = 30.0  # on top of a command's own timeout


class WorkerError(RuntimeError):
    pass


class WorkerProc:
    def __init__(self, index: int, proc: asyncio.subprocess.Process) -> None:
        self.index = index
        self.proc = proc
        self.lock = asyncio.Lock()

    async def call(self, op: str, budget_s: float, /, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self.lock:
            self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
            await self.proc.stdin.drain()
            try:
                async with asyncio.timeout(budget_s + CALL_MARGIN_S):
                    line = await self.proc.stdout.readline()
            except TimeoutError:
                raise WorkerError(
                    f"worker {self.index}: no answer to {op} in {budget_s + CALL_MARGIN_S:.0f} s"
                ) from None
        if not line:
            raise WorkerError(f"worker {self.index} exited (code {self.proc.returncode}) during {op}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"worker {self.index}: {op}: {reply['error']}")
        return reply


class WorkerPool:
    def __init__(self, workers: list[WorkerProc]) -> None:
        self.workers = workers

    @classmethod
    async def start(cls, count: int, *, cpu: int | None, lifetime: float, first_index: int = 0) -> WorkerPool:
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        workers = []
        for i in range(first_index, first_index + count):
            argv = [sys.executable, "-m", "loadtest.bench.worker", "--index", str(i), "--lifetime", str(lifetime)]
            if cpu is not None and shutil.which("taskset"):
                argv = ["taskset", "-c", str(cpu), *argv]
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=REPO,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 26,
                preexec_fn=die_with_parent,
            )
            workers.append(WorkerProc(i, proc))
        return cls(workers)

    def __len__(self) -> int:
        return len(self.workers)

    def cpu(self) -> CpuSample:
        """CPU time of all client workers together (taskset execs in place: the pid is the worker's)."""
        total = CpuSample(0.0, 0.0, 0)
        for w in self.workers:
            sample = procstat.cpu(w.proc.pid)
            total = CpuSample(
                total.user_s + sample.user_s, total.system_s + sample.system_s, total.sched_ns + sample.sched_ns
            )
        return total

    async def call_all(self, op: str, budget_s: float, /, **args: Any) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(w.call(op, budget_s, **args) for w in self.workers)))

    async def call_each(self, op: str, budget_s: float, per_worker: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls = [w.call(op, budget_s, **args) for w, args in zip(self.workers, per_worker, strict=True)]
        return list(await asyncio.gather(*calls))

    async def stop(self) -> None:
        for w in self.workers:
            if w.proc.returncode is None and w.proc.stdin is not None:
                try:
                    w.proc.stdin.write(b'{"op": "exit"}\n')
                    w.proc.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass
        for w in self.workers:
            try:
                async with asyncio.timeout(10):
                    await w.proc.wait()
            except TimeoutError:
                w.proc.kill()
                await w.proc.wait()

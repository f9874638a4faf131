"""Child processes die with the bench: PR_SET_PDEATHSIG makes the kernel send SIGTERM when the bench exits."""

from __future__ import annotations

import asyncio
import ctypes
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A `preexec_fn` for subprocesses (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


async def stdin_commands(lifetime_s: float, limit: int = 1 << 16, name: str = "") -> AsyncIterator[dict[str, Any]]:
    """The JSON commands a bench child reads on stdin, one a line, until `exit`, the end of stdin (its orchestrator
    is gone) or `lifetime_s` seconds: a child never outlives its run (`name` says so on stderr when it is over)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    deadline = time.monotonic() + lifetime_s
    while True:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                line = await reader.readline()
        except TimeoutError:
            if name:
                print(f"{name}: lifetime of {lifetime_s:.0f} s over, exiting", file=sys.stderr)
            return
        if not line:
            return
        cmd: dict[str, Any] = json.loads(line)
        if cmd.get("op") == "exit":
            return
        yield cmd

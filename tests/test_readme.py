"""README.md's hand-made session runs as written: the documented `python -m websockets` command against a real node
process, the documented lines typed into it, the documented answers back (ids and times aside)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from queue import Empty, Queue
from typing import Any

from jansamvad.localredis import free_port
from tests.helpers import ADMIN_KEY, SECRET, stop_process

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
VOLATILE = {"sub", "th", "ts"}  # differ on every run: the leader's subject, the town hall id, timestamps
ANSI = re.compile(r"\x1b(\[[0-9;]*[A-Za-z]|[78])")


def documented_session() -> tuple[str, list[tuple[str, str]]]:
    """The command of the README's session, and its lines in order: ("send" | "answer", text)."""
    block = next(b for b in re.findall(r"^```[a-z]*\n(.*?)^```$", README, re.S | re.M) if "python -m websockets" in b)
    lines = block.splitlines()
    command = lines[0].removeprefix("$ ")
    steps = [("send" if line[0] == ">" else "answer", line[2:]) for line in lines if line[:2] in ("> ", "< ")]
    return command, steps


def rest(port: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, Any] = json.load(response)
        return result


def same(documented: dict[str, Any], received: dict[str, Any]) -> bool:
    return documented.keys() == received.keys() and all(
        documented[key] == received[key] for key in documented if key not in VOLATILE
    )


def test_readme_websockets_session_runs_as_documented(tmp_path: Path) -> None:
    command, steps = documented_session()
    assert command == ".venv/bin/python -m websockets 'ws://localhost:8000/ws?enc=json'"
    assert '"title": "पटना टाउन हॉल"' in README and '"role": "leader", "name": "Leader"' in README
    port = free_port()
    env = {**os.environ, "JANSAMVAD_SECRET": SECRET, "JANSAMVAD_ADMIN_KEY": ADMIN_KEY, "PYTHONUNBUFFERED": "1"}
    with (tmp_path / "node.log").open("ab") as log:
        node = subprocess.Popen(
            [sys.executable, "-m", "jansamvad", "serve", "--port", str(port), "--log-level", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    client: subprocess.Popen[str] | None = None
    reader = threading.Thread()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                townhall = rest(port, "/api/townhalls", {"title": "पटना टाउन हॉल"})
                break
            except OSError:
                assert time.monotonic() < deadline and node.poll() is None, (tmp_path / "node.log").read_text()
                time.sleep(0.1)
        token = rest(port, f"/api/townhalls/{townhall['id']}/tokens", {"role": "leader", "name": "Leader"})["token"]

        # Exactly the documented command, on this test's port (the README's node listens on 8000).
        url = re.search(r"'(ws://\S+)'", command)
        assert url is not None
        client = subprocess.Popen(
            [sys.executable, "-m", "websockets", url.group(1).replace(":8000", f":{port}")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        answers: Queue[str] = Queue()

        def read() -> None:
            assert client is not None and client.stdout is not None
            for raw in client.stdout:
                for line in ANSI.sub("\n", raw).splitlines():
                    answers.put(line.strip().lstrip("> ").strip())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert client.stdin is not None
        received: list[str] = []
        for kind, text in steps:
            if kind == "send":
                client.stdin.write(text.replace("<leader token>", token) + "\n")
                client.stdin.flush()
                continue
            expected = json.loads(text)
            deadline = time.monotonic() + 10
            while True:  # the next answer like the documented one (viewers counts may come in between)
                try:
                    line = answers.get(timeout=max(0.01, deadline - time.monotonic()))
                except Empty:
                    raise AssertionError(f"no answer like {text}; got {received}") from None
                received.append(line)
                if line.startswith("< ") and same(expected, json.loads(line[2:])):
                    break
        client.stdin.close()  # Ctrl-D
        assert client.wait(timeout=10) == 0
        deadline = time.monotonic() + 5
        while not any("Connection closed: 1000 (OK)" in line for line in received):
            received.append(answers.get(timeout=max(0.01, deadline - time.monotonic())))
    finally:
        if client is not None:
            if client.poll() is None:
                client.kill()
                client.wait(5)
            if reader.ident is not None:
                reader.join(5)  # the output ended with the process
            assert client.stdout is not None
            client.stdout.close()
        stop_process(node)  # type: ignore[arg-type]

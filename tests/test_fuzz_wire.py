"""Fuzzing the wire of a real node: mutated WebSocket frames after the handshake, and mutated HTTP request heads.

`make fuzz` covers the decoder and validator (pure code). These cover what sits around them on a real socket: the
HTTP head guard and uvicorn's parser, the upgrade, websockets' frame parser driven by `WsConnection`, and the
session's first messages. Inputs come from a seeded generator (reproducible; `JANSAMVAD_FUZZ_SEED` and
`JANSAMVAD_FUZZ_CASES` change them), bounded in count and time.

For every input the node must answer with something documented: a close code from the registry other than 1011
(which would mean an unexpected exception), an HTTP error status below 500, or closing the socket. No error may be
logged, and afterwards the node still serves HTTP and a bystander's session.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import struct
from typing import Any

import httpx
import msgpack
import pytest

from jansamvad.protocol.codes import CloseCode
from jansamvad.server import RunningServer
from tests.helpers import RawClient, joined, make_hall

pytestmark = pytest.mark.anyio

SEED = int(os.environ.get("JANSAMVAD_FUZZ_SEED", "20261128"))
CASES = int(os.environ.get("JANSAMVAD_FUZZ_CASES", "240"))
BATCH = 24  # connections in flight at once
# 1005 ("no status"): the client sent a close frame without a code, and the node echoes it as RFC 6455 5.5.1 says.
DOCUMENTED_CLOSES = {int(code) for code in CloseCode} - {int(CloseCode.INTERNAL_ERROR)} | {1005}


def frame(rng: random.Random, payload: bytes) -> bytes:
    """One client frame with random flags, opcode, masking and (sometimes lying) length."""
    first = rng.choice([0x80, 0x80, 0x80, 0x00]) | rng.choice([0x1, 0x2, 0x2, 0x0, 0x8, 0x9, 0xA, rng.randrange(16)])
    if rng.random() < 0.1:
        first |= rng.choice([0x40, 0x20, 0x10])  # reserved bits (no extension was negotiated)
    masked = rng.random() < 0.9
    n = len(payload)
    claimed = n if rng.random() < 0.8 else rng.choice([0, n + 1, max(0, n - 1), 125, 126, 65535, 2**31, 2**63 - 1])
    if claimed < 126:
        header = bytes((first, (0x80 if masked else 0) | claimed))
    elif claimed < 65536:
        header = struct.pack("!BBH", first, (0x80 if masked else 0) | 126, claimed)
    else:
        header = struct.pack("!BBQ", first, (0x80 if masked else 0) | 127, claimed)
    if masked:
        key = rng.randbytes(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        header += key
    return header + payload


def message_payload(rng: random.Random, token: str) -> bytes:
    """Something a client might send: a hello (good or damaged token), a map with odd fields, JSON, or noise."""
    choice = rng.randrange(6)
    if choice == 0:
        return msgpack.packb(
            {"t": "hello", "token": token if rng.random() < 0.5 else token[: rng.randrange(len(token))]}
        )
    if choice == 1:
        fields: dict[Any, Any] = {"t": rng.choice(["hello", "ask", "ping", "upvote", "speech", "x" * 300, 7, None])}
        for _ in range(rng.randrange(4)):
            fields[rng.choice(["id", "key", "text", "qid", "last_seq", 1, b"\xff"])] = rng.choice(
                [None, -1, 2**63, 1.5, "", "x" * rng.randrange(5000), [1, [2, [3]]], {"a": {}}, b"\x00" * 10]
            )
        return msgpack.packb(fields, use_bin_type=rng.random() < 0.5)
    if choice == 2:
        return b'{"t": "hello", "token": "' + token.encode()[: rng.randrange(len(token) + 1)] + b'"}'
    if choice == 3:
        return b"\x91" * rng.randrange(1, 3000)  # deep msgpack nesting
    if choice == 4:
        data = bytearray(msgpack.packb({"t": "hello", "token": token}))
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    return rng.randbytes(rng.randrange(0, 300))


def frames_case(rng: random.Random, token: str) -> bytes:
    if rng.random() < 0.1:
        return rng.randbytes(rng.randrange(1, 200))  # not even frames
    return b"".join(frame(rng, message_payload(rng, token)) for _ in range(rng.randrange(1, 5)))


async def after_handshake(server: RunningServer, data: bytes) -> int | None:
    client = await RawClient.open(server)
    assert client.status == 101
    client.writer.write(data)
    try:
        client.writer.write_eof()  # nothing more comes: the node must decide with what it has
    except OSError:
        pass
    return await client.close_code(timeout=10)


def head_case(rng: random.Random, host: str) -> bytes:
    """A request head with mutations: bad request lines, odd or missing headers, broken upgrades, binary noise."""
    method = rng.choice([b"GET", b"POST", b"HEAD", b"OPTIONS", b"BREW", b"G\x00T", b"", b"GET" * 100])
    path = rng.choice([b"/ws", b"/", b"/healthz", b"/api/townhalls", b"/ws?" + b"a" * 9000, b"//..%2f..", b"*"])
    version = rng.choice([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9", b"", b"http/1.1"])
    headers = [b"Host: " + host.encode()]
    if rng.random() < 0.6:
        headers += [b"Upgrade: websocket", b"Connection: Upgrade", b"Sec-WebSocket-Version: 13"]
        headers.append(b"Sec-WebSocket-Key: " + rng.choice([b"dGhlIHNhbXBsZSBub25jZQ==", b"short", b"", b"\xff" * 24]))
        headers.append(b"Sec-WebSocket-Protocol: " + rng.choice([b"jansamvad.v1.msgpack", b"x", b"a," * 500]))
    for _ in range(rng.randrange(4)):
        headers.append(
            rng.choice(
                [
                    b"Content-Length: " + rng.choice([b"-1", b"99999999999999999999", b"abc", b"10"]),
                    b"Transfer-Encoding: chunked",
                    b"X-Forwarded-For: " + rng.randbytes(20),
                    b"Origin: http://evil.example",
                    b"X-Long: " + b"v" * rng.choice([100, 10_000, 100_000]),
                    b": no name",
                    b"Bad Header\x00: x",
                    rng.randbytes(rng.randrange(1, 60)),
                ]
            )
        )
    rng.shuffle(headers)
    head = method + b" " + path + b" " + version + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n"
    if rng.random() < 0.2:
        head = head.replace(b"\r\n", rng.choice([b"\n", b"\r", b"\r\r\n"]))
    if rng.random() < 0.2:
        cut = rng.randrange(len(head))
        head = head[:cut] + rng.randbytes(rng.randrange(1, 20)) + head[cut:]
    return head


async def send_head(server: RunningServer, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(data)
        try:
            writer.write_eof()
        except OSError:
            pass
        chunks = []
        async with asyncio.timeout(15):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
                if sum(map(len, chunks)) > 1 << 20:
                    break
        return b"".join(chunks)
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def still_serves(server: RunningServer, bystander: Any) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as http:
        assert (await http.get("/healthz")).status_code == 200
    await bystander.send({"t": "ping"})
    assert (await bystander.recv_until(lambda m: m["t"] == "pong"))["t"] == "pong"


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, "\n".join(f"{r.name}: {r.getMessage()}" for r in errors[:5])


async def test_fuzz_wire_mutated_frames_get_documented_answers(
    make_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server(hello_timeout_s=3.0)
    hall = await make_hall(server)
    bystander = await joined(server, hall.citizen_token(sub="c-bystander"))
    rng = random.Random(SEED)
    token = hall.citizen_token(sub="c-fuzz")
    cases = [frames_case(rng, token) for _ in range(CASES)]
    codes: dict[int | None, int] = {}
    with caplog.at_level(logging.WARNING):
        for start in range(0, len(cases), BATCH):
            batch = cases[start : start + BATCH]
            for data, code in zip(
                batch, await asyncio.gather(*(after_handshake(server, d) for d in batch)), strict=True
            ):
                assert code is None or code in DOCUMENTED_CLOSES, f"close {code} for {data[:80]!r} (seed {SEED})"
                codes[code] = codes.get(code, 0) + 1
            await RawClient.close_all()
    no_errors_logged(caplog)
    await still_serves(server, bystander)
    # The generator reached the interesting answers, not only one kind (else it tests little).
    assert len([c for c in codes if c is not None]) >= 4, codes


async def test_fuzz_wire_mutated_request_heads_get_an_http_error_or_a_close(
    make_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server(http_head_timeout_s=3.0, hello_timeout_s=3.0)
    hall = await make_hall(server)
    bystander = await joined(server, hall.citizen_token(sub="c-bystander"))
    rng = random.Random(SEED + 1)
    host = f"{server.host}:{server.port}"
    cases = [head_case(rng, host) for _ in range(CASES)]
    statuses: dict[int, int] = {}
    with caplog.at_level(logging.WARNING):
        for start in range(0, len(cases), BATCH):
            batch = cases[start : start + BATCH]
            for data, answer in zip(batch, await asyncio.gather(*(send_head(server, d) for d in batch)), strict=True):
                if not answer:
                    statuses[0] = statuses.get(0, 0) + 1  # closed without an answer
                    continue
                assert answer.startswith(b"HTTP/1.1 "), f"{answer[:60]!r} for {data[:80]!r} (seed {SEED + 1})"
                status = int(answer[9:12])
                assert status < 500 or status == 503, f"{status} for {data[:120]!r} (seed {SEED + 1})"
                statuses[status] = statuses.get(status, 0) + 1
    no_errors_logged(caplog)
    await still_serves(server, bystander)
    assert statuses.get(400, 0) > 0 and len(statuses) >= 3, statuses

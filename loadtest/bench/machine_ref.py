"""A machine-speed reference for the benches: the CPU time of a fixed, pure-Python workload shaped like a node's
join path (dict and str work, JSON and msgpack encode / decode, HMAC-SHA256 and base64url of a token), so that runs
of different sessions can be compared when the machine's speed drifts (the same code measured 183-217 µs per join
in one session and 282-325 µs in another on this machine: docs/benchmarks.md, "Joins (issue 19)").

`reference_ms()` runs the workload `repeats` times in this process and returns the best run's CPU time in ms (the
best: the run least disturbed by other processes). A bench divides its per-join CPU by it: a figure that moves with
the code, not with the machine. The workload is fixed: changing it makes every earlier figure incomparable.

    PYTHONPATH=. python -m loadtest.bench.machine_ref
"""

from __future__ import annotations

import base64
import hmac
import json
import time

import msgspec

ROUNDS = 6000  # the full workload: ~0.3-0.4 s of CPU on the machine of docs/benchmarks.md (2026-12-04)
_KEY = b"machine-ref-" + b"k" * 20
_SPEECH = [
    {"t": "speech", "text": f"वाक्य {k}: " + "नमस्ते " * 20, "final": True, "ts": 1_733_000_000_000 + k, "seq": k}
    for k in range(10)
]


def _round(n: int, encoder: msgspec.json.Encoder, decoder: msgspec.json.Decoder) -> int:
    """One join's worth of work, more or less: a token checked, a hello read, claims built, a snapshot encoded."""
    payload = json.dumps(
        {"sub": f"c-ref-{n}", "role": "citizen", "th": "abcdefgh12", "exp": 1_733_003_600 + n, "aud": "jansamvad"}
    ).encode()
    segment = base64.urlsafe_b64encode(payload).rstrip(b"=")
    signature = hmac.digest(_KEY, b"eyJhbGciOiJIUzI1NiJ9." + segment, "sha256")
    token = b"eyJhbGciOiJIUzI1NiJ9." + segment + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")
    head, body, sig = token.split(b".")
    claims = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
    ok = hmac.compare_digest(hmac.digest(_KEY, head + b"." + body, "sha256"), base64.urlsafe_b64decode(sig + b"="))
    hello = decoder.decode(encoder.encode({"t": "hello", "token": token.decode(), "mode": "captions"}))
    welcome = {
        "t": "welcome",
        "role": claims["role"],
        "sub": claims["sub"],
        "th": claims.get("th", ""),
        "title": "जुड़ाव",
        "seq": n,
        "recovered": False,
    }
    snapshot = {"t": "snapshot", "seq": n, "speech": _SPEECH, "viewers": n, "staff": 1, "questions": [], "polls": []}
    frames = [
        encoder.encode(welcome),
        json.dumps(snapshot, ensure_ascii=False).encode(),
        msgspec.msgpack.encode(snapshot),
    ]
    words = {word: len(word) for word in f"{hello['t']} {welcome['sub']} {claims['aud']} {n}".split()}
    return sum(len(frame) for frame in frames) + len(words) + ok


def workload(rounds: int = ROUNDS) -> int:
    encoder, decoder = msgspec.json.Encoder(), msgspec.json.Decoder()
    return sum(_round(n, encoder, decoder) for n in range(rounds))


def reference_ms(rounds: int = ROUNDS, repeats: int = 3) -> float:
    """The best of `repeats` runs of the workload, in ms of this process's CPU time."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        workload(rounds)
        best = min(best, time.process_time() - started)
    return round(best * 1000, 1)


if __name__ == "__main__":
    print(json.dumps({"machine_ref_ms": reference_ms()}))

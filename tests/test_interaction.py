"""Audience interaction and moderation over real sockets: auto-moderation, grouping, limits, claims, timeouts and
bans, slow mode, polls, conflated votes and reactions, export."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import httpx
import pytest

from jansamvad.models import Status
from jansamvad.protocol.roles import Role
from jansamvad.server import RunningServer
from tests.helpers import ADMIN_KEY, Hall, Session, joined, make_hall

pytestmark = pytest.mark.anyio


async def live_hall(server: RunningServer) -> Hall:
    hall = await make_hall(server)
    await server.node.store.set_status(hall.th, Status.LIVE)
    return hall


async def ask(session: Session, text: str, key: str) -> dict[str, Any]:
    return await session.request({"t": "ask", "key": key, "text": text})


async def test_interaction_abusive_question_is_rejected_before_anyone_sees_it(server: RunningServer) -> None:
    hall = await live_hall(server)
    moderator = await joined(server, hall.moderator)
    citizen = await joined(server, hall.citizen_token())
    ack = await ask(citizen, "तू चूूूतिया है", "abuse-0001")
    assert ack["state"] == "rejected"
    update = await moderator.recv_until(lambda m: m["t"] in ("queue_update", "queue_add"))
    assert update["t"] == "queue_update" and update["by"] == "auto" and update["reason"] == "blocked_word:hi"
    stored = await server.node.store.get_question(hall.th, ack["qid"])
    assert stored is not None and stored.decisions[0].by == "auto"


async def test_interaction_question_with_a_phone_number_is_held_with_its_reason(server: RunningServer) -> None:
    hall = await live_hall(server)
    moderator = await joined(server, hall.moderator)
    citizen = await joined(server, hall.citizen_token())
    ack = await ask(citizen, "मेरा नंबर 98765 43210 है, मदद करें", "phone-0001")
    assert ack["state"] == "pending"
    queued = await moderator.recv_until(lambda m: m["t"] == "queue_add")
    assert queued["q"]["flags"] == ["phone"] and queued["q"]["lang"] == "hi"


async def test_interaction_near_duplicates_share_a_group_and_sum_votes(server: RunningServer) -> None:
    hall = await live_hall(server)
    moderator = await joined(server, hall.moderator)
    one = await joined(server, hall.citizen_token(sub="c-one"))
    two = await joined(server, hall.citizen_token(sub="c-two"))
    first = await ask(one, "हमारे गाँव में सड़क कब बनेगी?", "group-0001")
    second = await ask(two, "हमारे गांव में सड़क कब बनेगी", "group-0002")
    other = await ask(two, "बिजली कब आएगी?", "group-0003")
    queued = [await moderator.recv_until(lambda m: m["t"] == "queue_add") for _ in range(3)]
    groups = {q["q"]["qid"]: q["q"]["group"] for q in queued}
    assert groups[second["qid"]] == groups[first["qid"]] == first["qid"]
    assert groups[other["qid"]] == other["qid"]
    for qid in (first["qid"], second["qid"]):
        await moderator.request({"t": "moderate", "qid": qid, "action": "approve"})
    for voter in ("c-v1", "c-v2"):
        session = await joined(server, hall.citizen_token(sub=voter))
        await session.request({"t": "upvote", "qid": first["qid"]})
        await session.request({"t": "upvote", "qid": second["qid"]})
    votes = await one.recv_until(lambda m: m["t"] == "votes" and m["g"].get(first["qid"]) == 4, timeout=4)
    assert votes["v"] == {first["qid"]: 2, second["qid"]: 2}


async def test_interaction_votes_reach_listeners_at_most_once_per_second(server: RunningServer) -> None:
    hall = await live_hall(server)
    moderator = await joined(server, hall.moderator)
    asker = await joined(server, hall.citizen_token(sub="c-asker"))
    qid = (await ask(asker, "अस्पताल कब खुलेगा?", "votes-0001"))["qid"]
    await moderator.request({"t": "moderate", "qid": qid, "action": "approve"})
    watcher = await joined(server, hall.citizen_token(sub="c-watcher"))
    voters = [await joined(server, hall.citizen_token(sub=f"c-voter-{i}")) for i in range(30)]
    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(v.request({"t": "upvote", "qid": qid}) for v in voters))
    final = await watcher.recv_until(lambda m: m["t"] == "votes" and m["v"].get(qid) == 30, timeout=4)
    elapsed = asyncio.get_running_loop().time() - started
    frames = [m for m in watcher.skipped if m["t"] == "votes"] + [final]
    # 30 votes, one frame per aggregates tick (0.2 s in tests): never one frame per vote.
    assert len(frames) <= elapsed / 0.2 + 2 < 30


async def test_interaction_reaction_taps_cost_one_frame_per_tick(server: RunningServer) -> None:
    hall = await live_hall(server)
    watcher = await joined(server, hall.citizen_token(sub="c-watch"))
    tappers = [await joined(server, hall.citizen_token(sub=f"c-tap-{i}")) for i in range(10)]
    for _ in range(10):
        for tapper in tappers:
            await tapper.send({"t": "react", "kind": "clap"})
    final = await watcher.recv_until(lambda m: m["t"] == "reactions" and m["c"].get("clap") == 100, timeout=4)
    frames = [m for m in watcher.skipped if m["t"] == "reactions"] + [final]
    assert len(frames) <= 10 < 100


async def test_interaction_ask_limits_per_citizen_and_retry_is_free(make_server: Any) -> None:
    server = await make_server(ask_per_minute=2)
    hall = await live_hall(server)
    citizen = await joined(server, hall.citizen_token())
    assert (await ask(citizen, "पहला", "limit-0001"))["t"] == "ack"
    assert (await ask(citizen, "दूसरा", "limit-0002"))["t"] == "ack"
    third = await ask(citizen, "तीसरा", "limit-0003")
    assert third["code"] == "rate_limited" and third["retry_ms"] > 0
    retry = await ask(citizen, "पहला", "limit-0001")  # the outbox resends an acknowledged question
    assert retry["t"] == "ack" and retry["dup"] is True


async def test_interaction_ask_limit_per_ip_spans_citizens(make_server: Any) -> None:
    server = await make_server(ask_per_minute_per_ip=3)
    hall = await live_hall(server)
    answers = []
    for i in range(4):
        citizen = await joined(server, hall.citizen_token(sub=f"c-ip-{i}"))
        answers.append(await ask(citizen, f"सवाल {i}", f"ip-limit-{i:04d}"))
    assert [a["t"] for a in answers] == ["ack", "ack", "ack", "error"]
    assert answers[-1]["code"] == "rate_limited"


async def test_interaction_slow_mode(server: RunningServer) -> None:
    hall = await live_hall(server)
    leader = await joined(server, hall.leader)
    citizen = await joined(server, hall.citizen_token())
    await leader.request({"t": "slow_mode", "seconds": 60})
    settings = await citizen.recv_until(lambda m: m["t"] == "settings")
    assert settings["slow_mode"] == 60
    assert (await ask(citizen, "पहला", "slow-0001"))["t"] == "ack"
    second = await ask(citizen, "दूसरा", "slow-0002")
    assert second["code"] == "rate_limited" and 50_000 < second["retry_ms"] <= 60_000
    _, snapshot = await (await Session.open(server)).hello(hall.citizen_token(sub="c-late"))
    assert snapshot is not None and snapshot["slow_mode"] == 60


async def test_interaction_claims_keep_two_moderators_apart(make_server: Any) -> None:
    server = await make_server(claim_ttl_s=0.5)
    hall = await live_hall(server)
    first = await joined(server, hall.moderator)
    second = await joined(server, server.node.tokens.issue(sub="m-second", role="moderator", th=hall.th, ttl_s=60)[0])
    citizen = await joined(server, hall.citizen_token())
    qid = (await ask(citizen, "कौन तय करेगा?", "claim-0001"))["qid"]
    claimed = await first.request({"t": "claim", "qid": qid})
    assert claimed["t"] == "ack" and claimed["until"] > 0
    notice = await second.recv_until(lambda m: m["t"] == "claim_update")
    assert notice["by"] == "m-mod"
    assert (await second.request({"t": "claim", "qid": qid}))["code"] == "claimed"
    assert (await second.request({"t": "moderate", "qid": qid, "action": "approve"}))["code"] == "claimed"
    await asyncio.sleep(0.6)  # the claim expires
    assert (await second.request({"t": "moderate", "qid": qid, "action": "approve"}))["state"] == "approved"


async def test_interaction_timeout_then_lift(server: RunningServer) -> None:
    hall = await live_hall(server)
    moderator = await joined(server, hall.moderator)
    citizen = await joined(server, hall.citizen_token(sub="c-loud"))
    ack = await moderator.request({"t": "restrict", "sub": "c-loud", "action": "timeout", "seconds": 60})
    assert ack["until"] > 0
    refused = await ask(citizen, "फिर से", "timeout-0001")
    assert refused["code"] == "timed_out" and 55_000 < refused["retry_ms"] <= 60_000
    await moderator.request({"t": "restrict", "sub": "c-loud", "action": "lift"})
    assert (await ask(citizen, "फिर से", "timeout-0001"))["t"] == "ack"


async def test_interaction_ban_closes_sessions_and_refuses_rejoin(server: RunningServer) -> None:
    hall = await live_hall(server)
    moderator = await joined(server, hall.moderator)
    citizen = await joined(server, hall.citizen_token(sub="c-abuser"))
    bystander = await joined(server, hall.citizen_token(sub="c-fine"))
    await moderator.request({"t": "restrict", "sub": "c-abuser", "action": "ban", "reason": "abuse"})
    assert (await citizen.expect_close())[0] == 4011
    again = await Session.open(server)
    await again.send({"t": "hello", "token": hall.citizen_token(sub="c-abuser")})
    assert (await again.expect_close())[0] == 4011
    await bystander.send({"t": "ping"})
    assert (await bystander.recv_until(lambda m: m["t"] == "pong"))["t"] == "pong"


async def test_interaction_global_ban_by_admin_reaches_every_townhall(server: RunningServer) -> None:
    hall = await live_hall(server)
    other = await live_hall(server)
    admin = await joined(server, hall.admin, th=hall.th)
    there = await joined(server, other.citizen_token(sub="c-everywhere"))
    await admin.request({"t": "restrict", "sub": "c-everywhere", "action": "ban", "scope": "global"})
    assert (await there.expect_close())[0] == 4011


async def test_interaction_poll_lifecycle_with_exact_final_result(server: RunningServer) -> None:
    hall = await live_hall(server)
    leader = await joined(server, hall.leader)
    watcher = await joined(server, hall.citizen_token(sub="c-watch"))
    created = await leader.request(
        {"t": "poll_create", "question": "सबसे ज़रूरी क्या?", "options": ["सड़क", "बिजली", "पानी"]}
    )
    pid = created["pid"]
    voter = await joined(server, hall.citizen_token(sub="c-early"))
    assert (await voter.request({"t": "poll_vote", "pid": pid, "option": 0}))["code"] == "bad_state"  # a draft
    await leader.request({"t": "poll_open", "pid": pid})
    opened = await watcher.recv_until(lambda m: m["t"] == "poll")
    assert opened["p"]["state"] == "open" and opened["p"]["options"] == ["सड़क", "बिजली", "पानी"]
    choices = [0, 1, 1, 2, 1, 0, 1]
    sessions = [await joined(server, hall.citizen_token(sub=f"c-poll-{i}")) for i in range(len(choices))]
    await asyncio.gather(
        *(s.request({"t": "poll_vote", "pid": pid, "option": c}) for s, c in zip(sessions, choices, strict=True))
    )
    dup = await sessions[0].request({"t": "poll_vote", "pid": pid, "option": 2})
    assert dup["dup"] is True
    live = await watcher.recv_until(lambda m: m["t"] == "poll_counts" and sum(m["c"]) == 7, timeout=4)
    assert live["c"] == [2, 4, 1]
    await leader.request({"t": "poll_close", "pid": pid})
    closed = await watcher.recv_until(lambda m: m["t"] == "poll")
    assert closed["p"]["state"] == "closed" and closed["p"]["counts"] == [2, 4, 1]
    assert (await voter.request({"t": "poll_vote", "pid": pid, "option": 0}))["code"] == "bad_state"


async def test_interaction_export_json_and_csv(server: RunningServer) -> None:
    hall = await live_hall(server)
    moderator = await joined(server, hall.moderator)
    citizen = await joined(server, hall.citizen_token(name="सीता", region="गया"))
    qid = (await ask(citizen, "नौकरी कब मिलेगी?", "export-0001"))["qid"]
    await moderator.request({"t": "moderate", "qid": qid, "action": "approve", "reason": "अच्छा सवाल"})
    await ask(citizen, "chutiya", "export-0002")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        denied = await http.get(f"/api/townhalls/{hall.th}/export", headers={"Authorization": "Bearer nope"})
        as_citizen = await http.get(
            f"/api/townhalls/{hall.th}/export", headers={"Authorization": f"Bearer {hall.citizen_token()}"}
        )
        report = (
            await http.get(f"/api/townhalls/{hall.th}/export", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        ).json()
        as_moderator = await http.get(
            f"/api/townhalls/{hall.th}/export?format=csv", headers={"Authorization": f"Bearer {hall.moderator}"}
        )
    assert denied.status_code == 401 and as_citizen.status_code == 401
    first, second = report["questions"]
    assert (first["state"], first["region"], first["sub"]) == ("approved", "गया", "c-test")
    assert first["decisions"][0] == {**first["decisions"][0], "action": "approve", "by": "m-mod", "reason": "अच्छा सवाल"}
    assert (second["state"], second["flags"]) == ("rejected", ["blocked_word:hinglish"])
    assert [e["what"] for e in report["audit"]] == ["approve", "reject"]
    rows = list(csv.DictReader(io.StringIO(as_moderator.text)))
    assert [r["qid"] for r in rows] == [first["qid"], second["qid"]] and rows[0]["name"] == "सीता"


async def test_interaction_leader_speech_and_announcement_with_a_key_are_said_once(server: RunningServer) -> None:
    """A leader resends after `unavailable` or a lost ack with the same key: the town hall hears it once."""
    hall = await live_hall(server)
    leader = await joined(server, hall.leader)
    citizen = await joined(server, hall.citizen_token(sub="c-listener"))
    first = await leader.request({"t": "speech", "text": "पहला वाक्य", "key": "key-speech-0001"})
    again = await leader.request({"t": "speech", "text": "पहला वाक्य", "key": "key-speech-0001"})
    assert "dup" not in first and again["dup"] is True and again["seq"] == first["seq"]
    notice = await leader.request({"t": "announce", "text": "गेट 2", "key": "key-notice-0001"})
    assert (await leader.request({"t": "announce", "text": "गेट 2", "key": "key-notice-0001"}))["seq"] == notice["seq"]
    plain = await leader.request({"t": "speech", "text": "बिना कुंजी"})  # no key: every send is spoken
    events = [await citizen.recv_until(lambda m: m["t"] in ("speech", "announce")) for _ in range(3)]
    assert [(m["t"], m["seq"]) for m in events] == [
        ("speech", first["seq"]),
        ("announce", notice["seq"]),
        ("speech", plain["seq"]),
    ]
    bad = await leader.request({"t": "speech", "text": "x", "key": "no spaces allowed"})
    assert bad["code"] == "invalid_field" and bad["field"] == "key"
    # Keys are each sender's own: a second leader who happens to pick the same key is heard, not acked `dup`.
    second_token = server.node.tokens.issue(sub="l-second", role=Role.LEADER, th=hall.th, ttl_s=600)[0]
    second = await joined(server, second_token)
    other = await second.request({"t": "speech", "text": "दूसरा नेता", "key": "key-speech-0001"})
    assert "dup" not in other and other["seq"] > plain["seq"]


async def test_interaction_repeated_decision_is_acked_dup_and_its_notices_go_out_again(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A moderator's resend after `unavailable`: the decision was stored but its notices could not be published. The
    # same decision from the same moderator is acknowledged `dup`, and every moderator's queue and the public list
    # hear it then; a resend after notices that did go out publishes nothing twice.
    hall = await live_hall(server)
    moderator = await joined(server, hall.moderator)
    other = await joined(server, server.node.tokens.issue(sub="m-other", role="moderator", th=hall.th, ttl_s=60)[0])
    citizen = await joined(server, hall.citizen_token())
    qid = (await ask(citizen, "पुल कब बनेगा?", "repeat-0001"))["qid"]
    publish = server.node.publish_moderation
    failures = [ConnectionError("the broker is down for one call")]

    async def fails_once(th: str, message: Any, key: str = "") -> int:  # fault injection, as Redis failing would
        if failures:
            raise failures.pop()
        return await publish(th, message, key)

    monkeypatch.setattr(server.node, "publish_moderation", fails_once)
    first = await moderator.request({"t": "moderate", "qid": qid, "action": "approve", "reason": "ठीक"})
    assert (first["t"], first["code"]) == ("error", "unavailable")
    again = await moderator.request({"t": "moderate", "qid": qid, "action": "approve", "reason": "ठीक"})
    assert (again["t"], again["state"], again["dup"]) == ("ack", "approved", True)
    update = await other.recv_until(lambda m: m["t"] == "queue_update" and m["qid"] == qid)
    assert (update["state"], update["by"], update["reason"]) == ("approved", "m-mod", "ठीक")
    event = await citizen.recv_until(lambda m: m["t"] == "question" and m["q"]["qid"] == qid)
    assert event["q"]["state"] == "approved"
    # Once more: acknowledged `dup`, and no second queue_update or question event (they are keyed by the decision).
    third = await moderator.request({"t": "moderate", "qid": qid, "action": "approve"})
    assert (third["state"], third["dup"]) == ("approved", True)
    marker = await moderator.request({"t": "moderate", "qid": qid, "action": "pin"})  # a new decision: new notices
    assert marker["state"] == "approved"
    after = await other.recv_until(lambda m: m["t"] == "queue_update" and m["qid"] == qid)
    assert after["pinned"] is True  # the pin's notice, not a repeat of the approval's
    public = await citizen.recv_until(lambda m: m["t"] == "question" and m["q"]["qid"] == qid)
    assert public["q"]["pinned"] is True and public["seq"] == event["seq"] + 1
    # Stored once (one approval, one audit line), and another moderator's approve of it is still refused.
    assert (await other.request({"t": "moderate", "qid": qid, "action": "approve"}))["code"] == "bad_state"
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        report = (await http.get(f"/api/townhalls/{hall.th}/export", headers=headers)).json()
    assert [d["action"] for d in report["questions"][0]["decisions"]] == ["approve", "pin"]
    assert [e["what"] for e in report["audit"]] == ["approve", "pin"]

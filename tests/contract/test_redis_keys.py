"""The Redis naming scheme: one slot per town hall, names that cannot collide, and the transport-race filter."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from jansamvad.models import QState
from jansamvad.redis_conn import check_url, redact, transport_race
from jansamvad.redis_keys import RedisKeys, asked_field


def townhall_names(keys: RedisKeys, th: str) -> list[str]:
    hall = keys.townhall(th)
    question, poll = hall.question("q7"), hall.poll("p2")
    names = [hall.meta, hall.qseq, hall.asked, hall.rank, hall.group_rank, hall.group_public, hall.groups]
    names += [hall.recent("c-sita"), hall.reactions, hall.pseq, hall.polls, hall.audit, hall.restriction("c-x")]
    names += [hall.presence, hall.presence_staff, hall.presence_expiry]
    names += [question.hash, question.log, question.voters, question.claim]
    names += [poll.hash, poll.voters, *(hall.state(s) for s in QState)]
    for channel in (f"th:{th}", f"th:{th}:mod"):
        names += [keys.channel(channel).seq, keys.channel(channel).hist, keys.channel(channel).pub]
    names += [keys.channel(f"th:{th}:audio").pub, keys.channel(f"th:{th}:audio").kept]
    return names


@pytest.mark.parametrize("th", ["abcd2345", "with:colon", "{braces}", "per%cent", "हिंदी"])
def test_keys_of_a_townhall_share_one_slot(th: str) -> None:
    names = townhall_names(RedisKeys("jansamvad"), th)
    assert len(set(names)) == len(names), "two roles share a name"
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert all(name.startswith("jansamvad:{th:") for name in names)


def test_keys_of_different_townhalls_and_prefixes_differ() -> None:
    a, b = RedisKeys("one"), RedisKeys("two")
    assert not set(townhall_names(a, "x")) & set(townhall_names(a, "y"))
    assert not set(townhall_names(a, "x")) & set(townhall_names(b, "x"))
    # Escaping keeps ids apart that would otherwise meet in the tag.
    assert a.townhall("{x}").meta != a.townhall("%7Bx%7D").meta


def test_keys_of_a_channel_that_is_no_townhalls_get_their_own_tag() -> None:
    keys = RedisKeys("p").channel("global")
    assert keys.pub == "p:{ch:global}:pub" and key_slot(keys.seq.encode()) == key_slot(keys.pub.encode())


def test_keys_idempotency_field_is_unambiguous() -> None:
    assert asked_field("ab", "c") != asked_field("a", "bc")


@pytest.mark.parametrize("prefix", ["", "has space", "{tag}"])
def test_keys_reject_a_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError):
        RedisKeys(prefix)


def test_redis_url_forms() -> None:
    for url in ("redis://h:6379/0", "rediss://h", "redis+cluster://h:7000", "rediss+cluster://h", "unix:///tmp/r"):
        check_url(url)
    for url in ("http://h", "redis+cluster://h:7000/3", "h:6379"):
        with pytest.raises(ValueError):
            check_url(url)
    assert redact("redis://user:secret@h:6379/0") == "redis://user:***@h:6379/0"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


def test_transport_race_is_only_what_the_transport_raises() -> None:
    def ours() -> None:
        raise TypeError("a bug of ours")

    with pytest.raises(TypeError) as caught:
        ours()
    assert not transport_race(caught.value)
    assert not transport_race(ValueError("not one of the types"))

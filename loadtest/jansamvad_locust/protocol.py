"""The client side of protocol v1 (docs/protocol.md), sans-I/O: message builders, the speech stamp, seq tracking.

Nothing here imports locust or gevent. locust monkey-patches the standard library when it is imported, so the test
suite must never import it; keeping every protocol decision in this module lets the unit tests drive the users'
protocol handling with plain dicts, and leaves the locust classes (users.py) as thin I/O glue.

`ClientSession.handle` turns one decoded server message into `Outcome`s: a latency sample or a failure, named like
locust request names. The users report them into locust's statistics as request type "WS".
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

SUBPROTOCOL = "jansamvad.v1.msgpack"

# Close codes after which a client reconnects and resumes (docs/protocol.md, section 6.2, "rule of thumb"). 1001 and
# 1006 come from proxies and broken networks, never from the node itself, but a client treats them the same way.
RECONNECT_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 4008, 4009})
# 1000: we said `leave`; 4005: the town hall ended. Anything else not in RECONNECT_CODES is a failure.
NORMAL_CLOSE_CODES = frozenset({1000, 4005})
NO_CLOSE_FRAME = 1006  # what a client reports when the TCP connection ended without a close frame

# Messages that carry `seq` without being events of the stream: welcome and snapshot name its head, an ack the seq an
# action got. Every other message with a `seq` is an event, whatever its type: a type a later protocol version adds
# (section 9) takes a place in the stream too, and skipping it would look like a hole.
NOT_EVENTS = frozenset({"welcome", "snapshot", "ack", "error"})
PUBLIC_QUESTION_STATES = frozenset({"approved", "answered"})
REACTIONS = ("clap", "heart", "thumbs_up", "laugh", "sad")
STAFF_ROLES = frozenset({"moderator", "admin"})  # welcome.role values whose every join gets a snapshot

# Request names in locust's statistics (request type "WS"). The README lists them.
SPEECH_DELIVERY = "speech_delivery"  # leader send -> citizen receipt, from the wall-clock stamp in the text
FLAKY = "_flaky"  # suffix: what flaky citizens (flaky-mobile) measure, kept apart from the well-connected ones
SPEECH_DELIVERY_FLAKY = SPEECH_DELIVERY + FLAKY
ASK_ACK = "ask_ack"  # ask sent -> ack, on the connection it was first sent on
RESENT = "_resent"  # suffix: a request resent after a reconnect or a rate_limited answer, timed from its first send
RATE_LIMITED = "_rate_limited"  # suffix: a rate_limited answer to a resendable request (resent after retry_ms)
MAX_RETRIES = 5  # rate_limited answers one request may get before it counts as failed
ASK_ACK_RESENT = ASK_ACK + RESENT
STREAM_GAP = "stream_gap"  # a failure per hole in the seq stream; its "size" is the number of events lost
STREAM_DUPLICATE = "stream_duplicate"  # a failure per event seen twice (the node promises exactly once)


def encode(message: dict[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def decode(data: bytes) -> dict[str, Any]:
    """One binary frame to a message map; ValueError if the node sent something that is not one."""
    obj = msgpack.unpackb(data, raw=False)
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        raise ValueError(f"not a protocol message: {type(obj).__name__}")
    return obj


def new_key() -> str:
    """An idempotency key: 8-64 characters of [A-Za-z0-9_-] (docs/protocol.md, section 2)."""
    return secrets.token_urlsafe(16)


def close_code(payload: bytes) -> int:
    """The code of a close frame's payload; 1005 (no status) when it carries none."""
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005


# The speech stamp. Leader and citizens may run in different locust processes or machines, so a shared map keyed by
# seq would not work: the leader writes its wall-clock send time into the text itself. Distributed runs therefore need
# synchronised clocks (NTP) on the load machines; the README says so.

_STAMP = re.compile(r"\[lt:(\d{10,16}(?:\.\d{1,3})?)\] ")


def stamp_speech(text: str, sent_ms: float) -> str:
    return f"[lt:{sent_ms:.1f}] {text}"


def parse_stamp(text: str) -> float | None:
    """The send time (ms since the epoch) a leader wrote into a speech text, or None (someone else spoke)."""
    match = _STAMP.match(text)
    return float(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class Outcome:
    """One entry for locust's statistics: a sample (error is None) or a failure."""

    name: str
    ms: float
    size: int = 0
    error: str | None = None  # a short, stable category: locust groups failures by name and this text
    detail: str = ""  # the particulars (seq numbers, error text), for the log


class StreamTracker:
    """Checks the town hall's event stream for holes and repeats, across reconnects with resume.

    Every event carries `seq` (1, 2, 3 … with no holes), so a citizen that sees seq 7 right after seq 5 has lost
    event 6. A reconnect must not cause holes: the client sends `last_seq` and the node replays everything after it
    (welcome.recovered = true). If it cannot (the gap is older than its history window) it sends a snapshot, and the
    events in between are lost for this client: that counts too.
    """

    def __init__(self) -> None:
        self.last_seq: int | None = None  # the highest seq applied; sent as hello.last_seq on reconnect
        self.live_after = 0  # events up to this seq were replayed or in the snapshot; later ones are live
        self.lost = 0
        self.duplicates = 0
        self.resumes = 0
        self.unrecovered = 0
        self.resynced = 0  # staff resumes answered with their (documented) snapshot

    def on_welcome(self, seq: int, recovered: bool) -> None:
        self.live_after = seq
        if self.last_seq is not None:
            self.resumes += 1

    def on_snapshot(self, seq: int, staff: bool = False) -> Outcome | None:
        """The state at `seq`, sent instead of a replay. Events after our last_seq up to it were never seen.

        Moderators and admins always get a snapshot, resume or not (docs/protocol.md, section 3: the moderation queue
        is not replayable): for them the snapshot is the documented way back, it replaces their whole state, and the
        events it skips are not lost. They are counted in `resynced`, never as a gap.
        """
        previous = self.last_seq
        if previous is None or seq <= previous:
            self.last_seq = seq if previous is None else previous
            return None
        self.last_seq = seq
        if staff:
            self.resynced += 1
            return None
        self.unrecovered += 1
        return self._gap(
            seq - previous, "resume not recovered (snapshot instead of replay)", f"snapshot seq {seq}, last {previous}"
        )

    def on_event(self, seq: int) -> tuple[bool, Outcome | None]:
        """(apply it?, a gap or duplicate failure to report)."""
        last = self.last_seq
        if last is None:  # an event before welcome/snapshot: nothing to compare with yet
            self.last_seq = seq
            return True, None
        if seq <= last:
            self.duplicates += 1
            return False, Outcome(STREAM_DUPLICATE, 0.0, 1, "event seen twice", f"seq {seq} after {last}")
        self.last_seq = seq
        if seq == last + 1:
            return True, None
        return True, self._gap(seq - last - 1, "events missing (seq gap)", f"expected seq {last + 1}, got {seq}")

    def _gap(self, lost: int, error: str, detail: str) -> Outcome:
        self.lost += lost
        return Outcome(STREAM_GAP, 0.0, lost, error, f"{lost} lost: {detail}")


@dataclass(slots=True)
class Pending:
    """A request that waits for its ack (or error), keyed by its id."""

    name: str  # the locust request name its ack latency is reported under
    message: dict[str, Any]
    sent_at: float  # monotonic seconds, first send: latencies count from here
    last_sent: float  # the latest (re)send: timeouts count from here
    resend: bool  # idempotent (carries a key): resent after a reconnect, else given up when the connection drops
    resent: bool = False
    ok_errors: frozenset[str] = frozenset()  # error codes that are an expected race here, not a failure
    retry_at: float | None = None  # rate_limited: resend at this monotonic time (docs/protocol.md, section 6.1)
    retries: int = 0


class ClientSession:
    """What a client knows about its town hall, and its requests in flight. Survives reconnects of one user."""

    def __init__(self, role: str = "citizen", suffix: str = "") -> None:
        self.role = role
        self.suffix = suffix  # appended to every latency name this session reports (FLAKY), never to losses
        self.stream = StreamTracker()
        self.next_id = 1
        self.pending: dict[int, Pending] = {}
        self.welcomed = False
        self.staff = False  # a moderator or admin session (from welcome.role): resumes get a snapshot by design
        self.status = ""
        self.sub = ""
        self.public_questions: set[str] = set()  # qids citizens may upvote
        self.approved: list[str] = []  # public and not yet answered, oldest first (the leader answers these)
        self.queue: dict[str, float] = {}  # moderators: pending qid -> monotonic time we learnt of it
        self.open_polls: dict[str, int] = {}  # pid -> number of options
        self.voted: set[str] = set()
        self.polls_supported = True  # False once the node answered a poll request with unknown_type (a v1 node)
        self.created_polls: list[str] = []  # leader: pids from poll_create acks, not opened yet
        self.claims: dict[str, str] = {}  # moderators: qid -> who holds a claim on it (claim_update)
        self.my_claims: list[str] = []  # moderators: qids our claim acks granted, not decided yet
        self.claims_supported = True  # False once the node answered claim with unknown_type
        self.viewers = 0
        self.reconnect_after_ms: int | None = None
        self.acks = 0
        self.dup_acks = 0
        self.ok_errors = 0

    # Outgoing

    def hello(self, token: str) -> dict[str, Any]:
        """The first message of every connection; after the first join it asks to resume from last_seq."""
        self.welcomed = False
        message: dict[str, Any] = {"t": "hello", "token": token}
        if self.stream.last_seq is not None:
            message["last_seq"] = self.stream.last_seq
        return message

    def request(
        self, name: str, message: dict[str, Any], now: float, *, resend: bool = False, ok_errors: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Give `message` a fresh id and remember it until its ack; returns the message to send."""
        msg_id = self.next_id
        self.next_id += 1
        message = {**message, "id": msg_id}
        self.pending[msg_id] = Pending(name + self.suffix, message, now, now, resend, ok_errors=frozenset(ok_errors))
        return message

    def ask(self, text: str, now: float) -> dict[str, Any]:
        return self.request(ASK_ACK, {"t": "ask", "key": new_key(), "text": text}, now, resend=True)

    def upvote(self, qid: str, now: float) -> dict[str, Any]:
        # bad_state: the question was withdrawn (rejected) after we saw it; a race, not a fault. own_question: the
        # user picked a public question at random and it was its own, which the node refuses (docs/protocol.md 6.1).
        message = {"t": "upvote", "qid": qid, "key": new_key()}
        return self.request("upvote_ack", message, now, resend=True, ok_errors=("bad_state", "own_question"))

    def next_to_claim(self) -> str | None:
        """Moderators: the oldest pending question nobody else has claimed (taken off our view of the queue)."""
        free = [qid for qid in self.queue if self.claims.get(qid, self.sub) == self.sub]
        if not free:
            return None
        qid = min(free, key=self.queue.__getitem__)
        del self.queue[qid]
        return qid

    def poll_vote(self, pid: str, option: int, now: float) -> dict[str, Any]:
        self.voted.add(pid)
        message = {"t": "poll_vote", "pid": pid, "option": option, "key": new_key()}
        # bad_state: the poll closed between the event and our vote.
        return self.request("poll_vote_ack", message, now, resend=True, ok_errors=("bad_state",))

    def awaiting_acks(self) -> bool:
        """Requests sent and not answered that a dropped connection would lose (not idempotent, not waiting out a
        rate limit): what a user leaving at the run's end waits for, so its last speech is not counted as lost."""
        return any(not p.resend and p.retry_at is None for p in self.pending.values())

    def connection_lost(self, now: float) -> list[Outcome]:
        """After a drop: failures for the requests that cannot be resent; the idempotent ones wait for `resend`."""
        # Not joined any more: nothing may be sent until the next welcome (the node closes a connection whose first
        # message is not hello with 4000, so an action sent between connect and welcome would cost the session).
        self.welcomed = False
        failures: list[Outcome] = []
        for msg_id, p in list(self.pending.items()):
            if p.resend:
                p.resent = True
            else:
                del self.pending[msg_id]
                failures.append(Outcome(p.name, _ms(now - p.sent_at), 0, "connection lost before the ack"))
        return failures

    def resend(self, now: float) -> list[dict[str, Any]]:
        """Once joined again: every request still waiting for its ack, same id and key (the node dedups by key).
        Those waiting out a rate limit go later, through `due`."""
        again = [p for p in self.pending.values() if p.retry_at is None]
        for p in again:
            p.last_sent = now
        return [p.message for p in again]

    def due(self, now: float) -> list[dict[str, Any]]:
        """Rate-limited requests whose retry_ms has passed: send them again now."""
        ready = [p for p in self.pending.values() if p.retry_at is not None and p.retry_at <= now]
        for p in ready:
            p.retry_at, p.last_sent = None, now
        return [p.message for p in ready]

    def expire(self, now: float, timeout_s: float) -> list[Outcome]:
        """Requests unanswered `timeout_s` after their last send become failures (and are forgotten)."""
        failures = []
        for msg_id, p in list(self.pending.items()):
            if p.retry_at is None and now - p.last_sent > timeout_s:
                del self.pending[msg_id]
                failures.append(Outcome(p.name, _ms(now - p.sent_at), 0, f"no ack within {timeout_s:g} s"))
        return failures

    # Incoming

    def handle(self, msg: dict[str, Any], now: float, wall_ms: float, size: int = 0) -> list[Outcome]:
        """Apply one server message. `now` is monotonic seconds, `wall_ms` the wall clock (speech stamps)."""
        t = msg["t"]
        if "seq" in msg and t not in NOT_EVENTS:
            return self._event(t, msg, wall_ms, size)
        if t == "ack" or t == "error":
            return self._answer(msg, now, size)
        if t == "welcome":
            self.welcomed = True
            self.status, self.sub = msg["status"], msg["sub"]
            self.staff = msg["role"] in STAFF_ROLES
            self.stream.on_welcome(msg["seq"], msg["recovered"])
            return []
        if t == "snapshot":
            return self._snapshot(msg, now)
        if t == "queue_add":
            self.queue.setdefault(msg["q"]["qid"], now)
        elif t == "queue_update":
            if msg["state"] != "pending":
                self.queue.pop(msg["qid"], None)
                self.claims.pop(msg["qid"], None)
        elif t == "claim_update":
            if msg.get("by"):
                self.claims[msg["qid"]] = msg["by"]
            else:
                self.claims.pop(msg["qid"], None)
        elif t == "viewers":
            self.viewers = msg["n"]
        elif t == "reconnect":
            self.reconnect_after_ms = msg["after_ms"]
        # pong, votes, reactions, audio and types a later protocol version adds: nothing to track (section 9).
        return []

    def _snapshot(self, msg: dict[str, Any], now: float) -> list[Outcome]:
        self.status = msg["status"]
        self.public_questions.clear()
        self.approved.clear()
        for q in msg.get("questions", ()):
            self._question(q)
        for q in msg.get("queue", ()):
            self.queue.setdefault(q["qid"], now)
        for poll in msg.get("polls", ()):
            self._poll(poll)
        gap = self.stream.on_snapshot(msg["seq"], staff=self.staff)
        return [gap] if gap else []

    def _event(self, t: str, msg: dict[str, Any], wall_ms: float, size: int) -> list[Outcome]:
        seq = msg["seq"]
        apply, problem = self.stream.on_event(seq)
        out = [problem] if problem else []
        if not apply:
            return out
        if t == "speech":
            sent_ms = parse_stamp(msg["text"])
            # Replayed events (seq up to welcome.seq) waited for our reconnect: their age is not delivery latency.
            if sent_ms is not None and seq > self.stream.live_after:
                out.append(Outcome(SPEECH_DELIVERY + self.suffix, max(0.0, wall_ms - sent_ms), size))
        elif t == "status":
            self.status = msg["status"]
        elif t == "question":
            self._question(msg["q"])
        elif t == "poll":
            self._poll(msg["p"])
        return out

    def _poll(self, p: dict[str, Any]) -> None:
        if p["state"] == "open":
            self.open_polls[p["pid"]] = len(p["options"])
        else:
            self.open_polls.pop(p["pid"], None)

    def _question(self, q: dict[str, Any]) -> None:
        qid, state = q["qid"], q["state"]
        if state in PUBLIC_QUESTION_STATES:
            self.public_questions.add(qid)
        else:
            self.public_questions.discard(qid)
        if state == "approved":
            if qid not in self.approved:
                self.approved.append(qid)
        elif qid in self.approved:
            self.approved.remove(qid)

    def _answer(self, msg: dict[str, Any], now: float, size: int) -> list[Outcome]:
        p = self.pending.pop(msg.get("re", -1), None)
        if p is None:
            # An answer to a request we gave up on, or to a resend already answered: nothing left to measure.
            return []
        ms = _ms(now - p.sent_at)
        name = p.name + RESENT if p.resent else p.name  # the offline time is in there: keep it apart
        if msg["t"] == "ack":
            self.acks += 1
            if msg.get("dup"):
                self.dup_acks += 1
            if p.message["t"] == "poll_create" and "pid" in msg:
                self.created_polls.append(msg["pid"])
            elif p.message["t"] == "claim":
                self.my_claims.append(p.message["qid"])
            return [Outcome(name, ms, size)]
        code = msg.get("code", "?")
        if code == "rate_limited" and p.resend and p.retries < MAX_RETRIES:
            # The protocol's answer to "too many": resend after retry_ms, same key. A limit, not a fault.
            p.retries += 1
            p.resent = True
            p.retry_at = now + max(int(msg.get("retry_ms", 1000)), 1) / 1000
            self.pending[msg["re"]] = p
            return [Outcome(p.name + RATE_LIMITED, ms, size)]
        if code == "unknown_type" and p.message["t"].startswith("poll_"):
            self.polls_supported = False  # a node without polls (protocol v1 before polls): stop asking
            return []
        if code == "unknown_type" and p.message["t"] == "claim":
            self.claims_supported = False  # a node without claims: moderators decide without claiming
            return []
        if code in p.ok_errors:
            self.ok_errors += 1
            return [Outcome(name, ms, size)]
        return [Outcome(name, ms, size, f"error {code}", str(msg.get("msg", ""))[:200])]


def _ms(seconds: float) -> float:
    return max(0.0, seconds * 1000.0)

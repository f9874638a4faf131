"""The locust users: citizen, moderator, leader.

Each user owns one WebSocket at a time and a reader greenlet that owns its life: connect, hello (with last_seq after
the first join), read and handle every message, and on a drop reconnect with backoff. The user's own greenlet runs
locust tasks at a human pace and only sends. Protocol decisions live in protocol.ClientSession (unit-tested without
locust); this module is I/O and statistics.

Statistics: request type "WS" with the names in protocol.py (speech_delivery, ask_ack, …) plus "connect" (a first
join: TCP + WebSocket handshake + hello → welcome) and "resume" (the same after a drop).
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import time
import weakref
from typing import Any

import gevent
import websocket
from gevent.event import Event
from locust import HttpUser, between, task
from locust.env import Environment
from locust.rpc import Message

from jansamvad_locust import scenarios
from jansamvad_locust.net import source_ip, ws_url
from jansamvad_locust.protocol import (
    FLAKY,
    NORMAL_CLOSE_CODES,
    REACTIONS,
    RECONNECT_CODES,
    ClientSession,
    Outcome,
    stamp_speech,
)
from jansamvad_locust.wsclient import Busy, Closed, Connection

log = logging.getLogger("jansamvad_locust")

CONNECT_TIMEOUT_S = 10.0  # TCP + handshake, and again hello -> welcome
ACK_TIMEOUT_S = 30.0  # an acked request without an answer this long after its last send is a failure
READ_SLICE_S = 1.0  # the reader wakes at least this often to look at its clock (overdue acks, welcome timeout)
MAX_SESSIONS = 1000  # connections one user opens in its life, at most
BACKOFF_BASE_S, BACKOFF_CAP_S = 0.5, 15.0  # reconnect backoff with full jitter, as the browser client does
DRAIN_S = 2.0  # at the run's end a user waits this long, at most, for the acks of what it already sent
STABLE_SESSION_S = 10.0  # a session that lasted this long resets the backoff
MAX_LOGGED_DETAILS = 20  # per process: the first few particulars of failures go to the log, not thousands
STORM_MESSAGE = "jansamvad_storm"
POLL_EVERY = 8  # speech segments between the leader's polls

ASK_TEXTS = (
    "हमारे गाँव में सड़क कब बनेगी?",
    "सरकारी स्कूलों में शिक्षकों की कमी कब दूर होगी?",
    "किसानों को फसल का सही दाम कैसे मिलेगा?",
    "When will the new hospital in our district open?",
    "बिजली की कटौती कब रुकेगी?",
    "Youth unemployment: what is the plan for the next two years?",
    "पीने के पानी की समस्या का क्या समाधान है?",
)
SPEECH_TEXTS = (
    "भाइयों और बहनों, आज हम विकास की बात करेंगे।",
    "हर गाँव तक सड़क और बिजली पहुँचाना हमारा लक्ष्य है।",
    "Our first priority is clean drinking water for every home.",
    "युवाओं के लिए नए रोज़गार के अवसर बनाए जाएँगे।",
    "स्वास्थ्य सेवाएँ हर ज़िले में मज़बूत की जाएँगी।",
)

POLLS = (
    ("सबसे ज़रूरी मुद्दा क्या है?", "रोज़गार", "शिक्षा", "स्वास्थ्य", "पानी"),
    ("Should the new college be in the district town?", "Yes", "No", "Not sure"),
)

_details_logged = 0
_citizen_numbers = itertools.count()
_moderator_numbers = itertools.count()
_screen_numbers = itertools.count()
_units: dict[str, list[str]] = {}  # --units-file -> its unit codes (read once per process)


def load_units(path: str) -> list[str]:
    """The unit codes citizens join by (scenario booths): one a line; none without a file."""
    if not path:
        return []
    if path not in _units:
        with open(path, encoding="utf-8") as lines:
            _units[path] = [line.strip() for line in lines if line.strip()]
    return _units[path]


# The citizens running in this process, for the reconnect storm (a message from the master reaches every process).
_citizens: weakref.WeakSet[CitizenUser] = weakref.WeakSet()


class WsFailure(Exception):
    """What locust shows in its failures table: a short, stable category."""


class WsUser(HttpUser):
    abstract = True
    role = "citizen"

    # Set in on_start.
    scenario: scenarios.Scenario
    session: ClientSession
    token: str | None

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.scenario = scenarios.get(getattr(options, "scenario", "townhall"))
        self.th: str = getattr(options, "th", "") or ""
        self.url = ws_url(self.host or "")
        # locust's HTTP client trusts certifi's bundle only, not REQUESTS_CA_BUNDLE as requests itself would; honour
        # it, so a deployment with a private CA (infra/compose/certs/ca.pem) can be load-tested over https.
        bundle = os.environ.get("REQUESTS_CA_BUNDLE")
        if bundle:
            self.client.verify = bundle
        self.source_ip: str | None = None
        self.session = self.new_session()
        self.token = self.staff_token()
        self.conn: Connection | None = None
        self.joined = Event()
        self.stopping = False
        self.offline_until = 0.0  # monotonic: set by an intentional drop; the reader stays away until then
        self.paused_until = 0.0  # monotonic: the reader does not read until then (an app in the background)
        self.reader = gevent.spawn(self._supervise)
        self.joined.wait(2 * CONNECT_TIMEOUT_S)  # tasks start once joined (or after a bounded wait)

    def on_stop(self) -> None:
        self.stopping = True
        # A request the task sent just before the run's end (the leader's last speech) gets its ack first: leaving
        # at once would close the connection under it and count it "lost before the ack", which no node did.
        deadline = time.monotonic() + DRAIN_S
        while self.conn is not None and self.session.awaiting_acks() and time.monotonic() < deadline:
            gevent.sleep(0.02)
        conn = self.conn
        if conn is not None:
            conn.leave()
        self.reader.join(timeout=1.0)
        if not self.reader.dead:
            if self.conn is not None:
                self.conn.abort()
            self.reader.kill(block=True, timeout=1.0)

    # What the roles fill in

    def new_session(self) -> ClientSession:
        return ClientSession(self.role)

    def staff_token(self) -> str | None:
        return None

    def fetch_token(self) -> str | None:
        return self.token

    def on_joined(self) -> None:
        """Called in the reader greenlet after every welcome."""

    def before_connect(self) -> None:
        """Called in the reader greenlet before every connection attempt."""

    # Sending (from the task greenlet)

    def send(self, message: dict[str, Any]) -> bool:
        conn = self.conn
        if conn is None or not self.session.welcomed:
            return False
        try:
            conn.send(message)
        except Closed:
            return False  # the reader sees the drop and reconnects
        return True

    # Statistics

    def report(self, outcomes: list[Outcome]) -> None:
        global _details_logged
        fire = self.environment.events.request.fire
        for o in outcomes:
            exc = WsFailure(o.error) if o.error else None
            fire(request_type="WS", name=o.name, response_time=o.ms, response_length=o.size, exception=exc, context={})
            if o.error and o.detail and _details_logged < MAX_LOGGED_DETAILS:
                _details_logged += 1
                log.warning("%s %s: %s (%s)", self.role, o.name, o.error, o.detail)

    # The reader greenlet

    def _supervise(self) -> None:
        try:
            self._sessions()
        except Exception as exc:  # a bug in this file: count it (locust's exceptions table), never hide it
            log.exception("reader of a %s failed", self.role)
            self.environment.events.user_error.fire(user_instance=self, exception=exc, tb=exc.__traceback__)
        finally:
            self.joined.set()

    def _sessions(self) -> None:
        attempt = 0
        for _ in range(MAX_SESSIONS):
            wait = self.offline_until - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            if self.stopping:
                return
            started = time.monotonic()
            code = self._session()
            if self.stopping or code in NORMAL_CLOSE_CODES:
                return
            if code is not None and code not in RECONNECT_CODES and code != 4001:
                self.report([Outcome("closed", 0.0, 0, f"closed with {code}, not reconnecting")])
                return
            if code == 4001:
                self.token = None  # expired or refused: citizens join again for a new one
            if self.offline_until > time.monotonic():
                attempt = 0  # an intentional drop: the offline time is the wait
                continue
            attempt = 0 if time.monotonic() - started > STABLE_SESSION_S else attempt + 1
            gevent.sleep(random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)))

    def _session(self) -> int | None:
        """One connection from handshake to close: its close code, or None if it never opened."""
        name = ("connect" if self.session.stream.last_seq is None else "resume") + self.session.suffix
        started = time.monotonic()
        if self.token is None:
            self.token = self.fetch_token()
            if self.token is None:
                return None
        self.before_connect()
        try:
            conn = Connection.open(self.url, CONNECT_TIMEOUT_S, self.source_ip)
        except Busy as busy:  # admission control said "later": not a failure, but worth seeing in the statistics
            self.report([Outcome(name + "_busy", (time.monotonic() - started) * 1000)])
            gevent.sleep(busy.retry_after)
            return None
        except (OSError, websocket.WebSocketException) as exc:
            self.report([Outcome(name, (time.monotonic() - started) * 1000, 0, type(exc).__name__, str(exc))])
            return None
        self.conn = conn
        try:
            conn.send(self.session.hello(self.token))
            return self._read(conn, name, started)
        except Closed as closed:
            return closed.code
        finally:
            self.conn = None
            self.joined.clear()
            conn.release()
            self.report(self.session.connection_lost(time.monotonic()))

    def _read(self, conn: Connection, name: str, started: float) -> int:
        session = self.session
        bytes_per_s = self.read_bytes_per_s()
        next_check = started + READ_SLICE_S
        while True:  # ends when the connection closes; the run's end (on_stop) closes it
            pause = self.paused_until - time.monotonic()
            if pause > 0:
                gevent.sleep(pause)
            try:
                got = conn.recv(READ_SLICE_S)
            except Closed as closed:
                if not session.welcomed:
                    why = f"closed with {closed.code} before welcome"
                    self.report([Outcome(name, (time.monotonic() - started) * 1000, 0, why)])
                return closed.code
            now = time.monotonic()
            if got is not None:
                msg, size = got
                was_welcomed = session.welcomed
                self.report(session.handle(msg, now, time.time() * 1000, size))
                if not was_welcomed and session.welcomed:
                    self.report([Outcome(name, (now - started) * 1000, size)])
                    for message in session.resend(now):
                        conn.send(message)
                    self.joined.set()
                    self.on_joined()
                if bytes_per_s:
                    gevent.sleep(size / bytes_per_s)
            if now >= next_check:
                next_check = now + READ_SLICE_S
                if session.welcomed:
                    for message in session.due(now):  # rate-limited requests whose retry_ms has passed
                        conn.send(message)
                    self.report(session.expire(now, ACK_TIMEOUT_S))
                elif now - started > 2 * CONNECT_TIMEOUT_S:
                    self.report([Outcome(name, (now - started) * 1000, 0, "no welcome in time")])
                    conn.abort()

    def read_bytes_per_s(self) -> float | None:
        return None


class CitizenUser(WsUser):
    """Joins over REST, listens, and now and then asks, upvotes, reacts or loses the network."""

    weight = 100
    role = "citizen"

    def on_start(self) -> None:
        self.device_id = "lt-" + "".join(random.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=20))
        super().on_start()
        _citizens.add(self)

    def before_connect(self) -> None:
        if self.source_ip is None:
            runner = self.environment.runner
            per_ip = int(getattr(self.environment.parsed_options, "citizens_per_ip", 10) or 0)
            process = getattr(runner, "worker_index", 0) or 0
            self.source_ip = source_ip(self.url, next(_citizen_numbers), per_ip, process)

    def new_session(self) -> ClientSession:
        s = self.scenario
        self.flaky = s.flaky is not None and random.random() < s.flaky_share
        self.knobs = s.flaky if self.flaky and s.flaky is not None else s.citizen
        return ClientSession("citizen", FLAKY if self.flaky else "")

    def read_bytes_per_s(self) -> float | None:
        rates = self.knobs.read_bytes_per_s
        return random.uniform(*rates) if rates else None

    def wait_time(self) -> float:
        return random.uniform(*self.knobs.think)

    def fetch_token(self) -> str | None:
        # The same device id on every join gives the same anonymous identity (docs/protocol.md, section 7).
        body: dict[str, Any] = {"name": f"नागरिक {self.device_id[-4:]}", "region": "Patna", "device_id": self.device_id}
        units = load_units(getattr(self.environment.parsed_options, "units_file", "") or "")
        if units:
            # By a region link, as from a WhatsApp group: the link page (which sends the browser on to the citizen
            # page with the unit), then the join with that unit, which the node checks and signs into the token.
            self.unit = getattr(self, "unit", "") or random.choice(units)
            with self.client.get(
                f"/j/{self.unit}?th={self.th}", name="/j/[unit]", allow_redirects=False, catch_response=True
            ) as response:
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}")
                    return None
            body["unit"] = self.unit
        with self.client.post(
            f"/api/townhalls/{self.th}/join", json=body, name="/api/townhalls/[th]/join", catch_response=True
        ) as response:
            if response.status_code != 201:
                response.failure(f"HTTP {response.status_code}")
                return None
            token: str = response.json()["token"]
            return token

    def drop(self, offline_s: float) -> None:
        """Lose the network now; the reader comes back after `offline_s` with last_seq."""
        self.offline_until = max(self.offline_until, time.monotonic() + offline_s)
        conn = self.conn
        if conn is not None:
            conn.abort()

    @task
    def act(self) -> None:
        k = self.knobs
        if k.pause_chance and random.random() < k.pause_chance:
            self.paused_until = time.monotonic() + random.uniform(*k.pause)
        if not self.session.welcomed:
            return
        action = random.choices(
            ("ask", "upvote", "vote", "react", "listen", "drop"),
            weights=(k.ask, k.upvote, k.vote, k.react, k.listen, k.drop),
        )[0]
        now = time.monotonic()
        unvoted = [pid for pid in self.session.open_polls if pid not in self.session.voted]
        if action == "vote" and unvoted:
            pid = random.choice(unvoted)
            self.send(self.session.poll_vote(pid, random.randrange(self.session.open_polls[pid]), now))
        elif action == "ask":
            self.send(self.session.ask(f"{random.choice(ASK_TEXTS)} ({random.randrange(10**6)})", now))
        elif action == "upvote" and self.session.public_questions:
            qid = random.choice(tuple(self.session.public_questions))
            self.send(self.session.upvote(qid, now))
        elif action in ("react", "upvote", "vote"):  # nothing to upvote or vote on yet: react instead
            self.send({"t": "react", "kind": random.choice(REACTIONS)})
        elif action == "drop":
            self.drop(random.uniform(*k.offline))


class ScreenUser(WsUser):
    """A booth screen: listens like a citizen and, as its volunteer does with the remote, sets how many people watch
    (`audience`) after every welcome and now and then again (docs/protocol.md, section 4)."""

    fixed_count = 0  # hooks.py sets it from the scenario (and leaves the class out when the scenario has none)
    role = "screen"

    def on_start(self) -> None:
        self.people = 0
        super().on_start()

    def staff_token(self) -> str | None:
        tokens = [t for t in (getattr(self.environment.parsed_options, "screen_token", "") or "").split(",") if t]
        if not tokens:
            return None
        process = getattr(self.environment.runner, "worker_index", 0) or 0
        return tokens[(process + next(_screen_numbers)) % len(tokens)]

    def wait_time(self) -> float:
        return random.uniform(*self.scenario.audience_every)

    def on_joined(self) -> None:
        self.people = self.people or round(random.uniform(*self.scenario.audience))
        self.send(self.session.request("audience_ack", {"t": "audience", "people": self.people}, time.monotonic()))

    @task
    def recount(self) -> None:
        if not self.session.welcomed:
            return
        low, high = self.scenario.audience
        self.people = max(0, min(round(high), self.people + random.randint(-20, 20)))
        self.send(self.session.request("audience_ack", {"t": "audience", "people": self.people}, time.monotonic()))


class ModeratorUser(WsUser):
    """Works the queue at a human pace, as the moderator page does: claim the oldest unclaimed question, read it
    (one think time, 1-3 s), then approve (80 %) or reject it. Claims keep two moderators off the same question."""

    fixed_count = 1  # hooks.py sets it from the scenario before the run starts
    role = "moderator"
    wait_time = between(1.0, 3.0)

    def staff_token(self) -> str | None:
        tokens = [t for t in (getattr(self.environment.parsed_options, "moderator_token", "") or "").split(",") if t]
        if not tokens:
            return None
        # Round-robin within this process, offset by the process number: moderators on different workers of a
        # distributed run (each usually holding one) take different tokens too.
        process = getattr(self.environment.runner, "worker_index", 0) or 0
        return tokens[(process + next(_moderator_numbers)) % len(tokens)]

    @task
    def work(self) -> None:
        session = self.session
        if not session.welcomed:
            return
        now = time.monotonic()
        if session.my_claims or not session.claims_supported:
            qid = session.my_claims.pop(0) if session.my_claims else session.next_to_claim()
            if qid is None:
                return
            action = "approve" if random.random() < 0.8 else "reject"
            # bad_state: decided meanwhile (a claim lapses after 30 s); claimed: someone claimed it after ours lapsed.
            message = {"t": "moderate", "qid": qid, "action": action}
            self.send(session.request("moderate_ack", message, now, ok_errors=("bad_state", "claimed")))
            return
        qid = session.next_to_claim()
        if qid is not None:
            # claimed: another moderator was quicker; bad_state: it was decided (or auto-moderated) meanwhile.
            message = {"t": "claim", "qid": qid}
            self.send(session.request("claim_ack", message, now, ok_errors=("claimed", "bad_state", "not_found")))


class LeaderUser(WsUser):
    """Goes live, speaks a segment every few seconds (interim, interim, final), announces, answers questions."""

    fixed_count = 1
    role = "leader"

    def on_start(self) -> None:
        self.spoken = 0
        self.open_poll: str | None = None
        super().on_start()

    def staff_token(self) -> str | None:
        return getattr(self.environment.parsed_options, "leader_token", None) or None

    def wait_time(self) -> float:
        return random.uniform(*self.scenario.speech_every)

    def on_joined(self) -> None:
        if self.session.status != "live":
            self.send(self.session.request("go_live_ack", {"t": "go_live"}, time.monotonic()))

    @task
    def speak(self) -> None:
        if not self.session.welcomed:
            return
        self.spoken += 1
        now = time.monotonic()
        text = stamp_speech(random.choice(SPEECH_TEXTS), time.time() * 1000)
        if self.spoken % self.scenario.announce_every == 0:
            self.send(self.session.request("announce_ack", {"t": "announce", "text": text}, now))
        else:
            message = {"t": "speech", "text": text, "final": self.spoken % 3 == 0}
            self.send(self.session.request("speech_ack", message, now))
        if self.spoken % 4 == 0 and self.session.approved:
            qid = self.session.approved.pop(0)
            message = {"t": "moderate", "qid": qid, "action": "answer"}
            # bad_state: a moderator rejected it meanwhile.
            self.send(self.session.request("answer_ack", message, now, ok_errors=("bad_state",)))
        self.run_polls(now)

    def run_polls(self, now: float) -> None:
        """A poll every POLL_EVERY segments: create, open once the ack names it, close POLL_EVERY segments later.

        A node without polls answers poll_create with unknown_type; the session then stops asking (not a failure).
        """
        session = self.session
        if session.created_polls:
            pid = session.created_polls.pop(0)
            self.send(session.request("poll_open_ack", {"t": "poll_open", "pid": pid}, now))
            self.open_poll = pid
        elif self.spoken % POLL_EVERY == 0 and session.polls_supported:
            if self.open_poll is not None:
                self.send(session.request("poll_close_ack", {"t": "poll_close", "pid": self.open_poll}, now))
                self.open_poll = None
            options = random.choice(POLLS)
            message = {"t": "poll_create", "question": options[0], "options": list(options[1:])}
            self.send(session.request("poll_create_ack", message, now))


def on_storm(environment: Environment, msg: Message, **kwargs: Any) -> None:
    """The master's shape says "storm": a share of this process's citizens lose the network at the same moment."""
    share = float(msg.data["share"])
    low, high = msg.data["return"]
    dropped = 0
    for citizen in list(_citizens):
        if not citizen.stopping and random.random() < share:
            citizen.drop(random.uniform(low, high))
            dropped += 1
    log.info("reconnect storm: %d of %d citizens dropped", dropped, len(_citizens))

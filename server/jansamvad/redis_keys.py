"""Every Redis key and pub/sub channel JanSamvad uses: one naming scheme, one place.

All names start with the configurable prefix P (`settings.redis_prefix`, default `jansamvad`), so several
deployments can share one Redis. Everything that belongs to one town hall carries the town hall's hash tag
T = `{th:<id>}`: in a cluster only the part between the first `{` and `}` is hashed, so a town hall's keys and
channels all live in one slot, on one primary. That is what lets one Lua script assign a seq, append to history and
publish atomically, and lets the store's scripts check and change a question, its voters and its state index at once.

    P:T:seq                    broker: last seq of channel `th:<id>` (INCR)
    P:T:hist                   broker: its history, a capped stream whose entry ids are `<seq>-0`
    P:T:pub                    broker: its sharded pub/sub channel (SPUBLISH / SSUBSCRIBE)
    P:T:mod:seq|hist|pub       the same for channel `th:<id>:mod` (any `th:<id>:<sub>` maps to P:T:<sub>:...)
    P:{ch:<name>}:seq|hist|pub a channel that is not a town hall's (not used by the node today)

    P:T:meta                   store: the town hall (hash: id, title, lang, status, created_ms)
    P:T:qseq                   store: last question number (INCR); question ids are `q<n>`
    P:T:asked                  store: idempotency, `<len(author)>:<author><key>` -> qid (hash)
    P:T:question:<qid>         store: a question (hash)
    P:T:question:<qid>:log     store: its decisions, oldest first (list of JSON [action, by, reason, ts])
    P:T:question:<qid>:voters  store: who voted for it (set)
    P:T:state:<state>          store: qids in that state, scored by question number (sorted set; oldest first)
    P:T:reactions              store: reaction totals (hash kind -> count)
    P:townhalls                store: every town hall id, scored by creation time (sorted set; its own slot)

    P:T:presence               presence: node id -> local listeners (hash)
    P:T:presence:exp           presence: node id -> when its report expires, server time in ms (sorted set)

A town hall id is used as-is inside the tag unless it contains `{`, `}` or `%`, which are percent-encoded so the
tag always closes where it should and different ids never share a name.
"""

from __future__ import annotations

from dataclasses import dataclass

from jansamvad.models import QState

TOWNHALL_CHANNEL_PREFIX = "th:"  # the node's logical channel names: th:<id> and th:<id>:mod


def _escape(name: str) -> str:
    return name.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def townhall_tag(th: str) -> str:
    return "{th:" + _escape(th) + "}"


@dataclass(frozen=True, slots=True)
class ChannelKeys:
    seq: str
    hist: str
    pub: str  # the sharded pub/sub channel


@dataclass(frozen=True, slots=True)
class QuestionKeys:
    hash: str
    log: str
    voters: str


@dataclass(frozen=True, slots=True)
class TownhallKeys:
    base: str  # P:T, what every other key of the town hall starts with

    @property
    def meta(self) -> str:
        return self.base + ":meta"

    @property
    def qseq(self) -> str:
        return self.base + ":qseq"

    @property
    def asked(self) -> str:
        return self.base + ":asked"

    @property
    def question_prefix(self) -> str:
        """A question's hash is this plus its qid (scripts that create or list questions derive keys from it)."""
        return self.base + ":question:"

    def question(self, qid: str) -> QuestionKeys:
        key = self.question_prefix + qid
        return QuestionKeys(key, key + ":log", key + ":voters")

    def state(self, state: QState) -> str:
        return f"{self.base}:state:{state.value}"

    @property
    def reactions(self) -> str:
        return self.base + ":reactions"

    @property
    def presence(self) -> str:
        return self.base + ":presence"

    @property
    def presence_expiry(self) -> str:
        return self.base + ":presence:exp"


def asked_field(author: str, key: str) -> str:
    """The idempotency field of (author, key); the length prefix keeps it unambiguous whatever either contains."""
    return f"{len(author)}:{author}{key}"


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        if not prefix or any(c in prefix for c in "{} \t\r\n"):
            raise ValueError("the Redis prefix must be non-empty, without braces or whitespace")
        self.prefix = prefix
        self.townhalls = prefix + ":townhalls"
        self._channels: dict[str, ChannelKeys] = {}

    def townhall(self, th: str) -> TownhallKeys:
        return TownhallKeys(f"{self.prefix}:{townhall_tag(th)}")

    def channel(self, channel: str) -> ChannelKeys:
        """The keys and pub/sub channel of a logical broker channel (cached: the node uses a handful per town hall)."""
        keys = self._channels.get(channel)
        if keys is None:
            keys = self._channels[channel] = self._channel_keys(channel)
        return keys

    def _channel_keys(self, channel: str) -> ChannelKeys:
        if channel.startswith(TOWNHALL_CHANNEL_PREFIX):
            th, sep, sub = channel[len(TOWNHALL_CHANNEL_PREFIX) :].partition(":")
            base = f"{self.prefix}:{townhall_tag(th)}" + (":" + sub if sep else "")
        else:
            base = f"{self.prefix}:{{ch:{_escape(channel)}}}"
        return ChannelKeys(base + ":seq", base + ":hist", base + ":pub")

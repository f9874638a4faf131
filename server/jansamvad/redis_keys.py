"""Every Redis key and pub/sub channel JanSamvad uses: one naming scheme, one place.

All names start with the configurable prefix P (`settings.redis_prefix`, default `jansamvad`), so several
deployments can share one Redis. Everything that belongs to one town hall carries the town hall's hash tag
T = `{th:<id>}`: in a cluster only the part between the first `{` and `}` is hashed, so a town hall's keys and
channels all live in one slot, on one primary. That is what lets one Lua script assign a seq, append to history and
publish atomically, and lets the store's scripts check and change a question, its voters and its state index at once.

    P:T:seq                    broker: last seq of channel `th:<id>` (INCR)
    P:T:hist                   broker: its history, a capped stream whose entry ids are `<seq>-0`
    P:T:pub                    broker: its sharded pub/sub channel (SPUBLISH / SSUBSCRIBE)
    P:T:pubkeys                broker: idempotency keys of its publications, key -> seq (hash; expires after a day)
    P:T:mod:seq|hist|pub|pubkeys  the same for channel `th:<id>:mod`, the moderation stream (mseq)
    P:T:audio:pub              broker: channel `th:<id>:audio`, the leader's audio chunks (ephemeral, SPUBLISH only)
    P:T:audio:kept             broker: its latest kept message, the current recording's init chunk (msgpack string,
                               expires a day after it was written; Broker.publish_kept)
    P:{ch:<name>}:seq|hist|pub a channel that is not a town hall's: the node's control channel `ctl` (a ban kicks the
                               citizen's sessions on every node) uses P:{ch:ctl}:pub, published without history

    P:T:meta                   store: the town hall (hash: id, title, lang, status, created_ms)
    P:T:qseq                   store: last question number (INCR); question ids are `q<n>`
    P:T:asked                  store: idempotency, `<len(author)>:<author><key>` -> qid (hash)
    P:T:question:<qid>         store: a question (hash)
    P:T:question:<qid>:log     store: its decisions, oldest first (list of JSON [action, by, reason, ts])
    P:T:question:<qid>:voters  store: who voted for it (set)
    P:T:question:<qid>:claim   store: the moderator who claimed it (string, expires with the claim)
    P:T:state:<state>          store: qids in that state, scored by question number (sorted set; oldest first)
    P:T:rank                   store: public questions by votes (sorted set qid -> votes)
    P:T:group_rank             store: groups of public questions by summed votes (sorted set group -> votes)
    P:T:group_public           store: public questions per group (hash group -> count; a group leaves at 0)
    P:T:groups                 store: every group's first question and text, oldest first (list of JSON)
    P:T:recent:<author>        store: the author's latest question texts (list, capped)
    P:T:reactions              store: reaction totals (hash kind -> count)
    P:T:pseq                   store: last poll number (INCR); poll ids are `p<n>`
    P:T:polls                  store: poll ids, scored by poll number (sorted set; oldest first)
    P:T:poll:<pid>             store: a poll (hash; counts in fields c0, c1, ...)
    P:T:poll:<pid>:voters      store: who voted in it, and for which option (hash user -> option)
    P:T:journal:speech         journal: every final speech event, member msgpack [seq, event], score seq (sorted set)
    P:T:journal:notice         journal: every announce and status event, the same way (sorted set)
    P:T:audit                  store: every decision, restriction, poll and setting change (list of JSON)
    P:T:programme              store: the town hall's programme (JSON: start, leader, description; programmes.py)
    P:T:restriction:<sub>      store: a ban or timeout in that town hall (JSON); T = {th:*} for everywhere
    P:townhalls                store: every town hall id, scored by creation time (sorted set; its own slot)
    P:townhalls:open           store: town halls not ended yet, scored by creation time (sorted set; counts them
                               for `max_open_townhalls`; an entry a crash left behind is cleaned when the cap is hit)
    P:programmes               store: town halls that have a programme, scored by start time (sorted set; its own
                               slot; an entry whose programme expired with its town hall is cleaned when listed)
    P:{regions}:current        store: the version of the region tree in use (string; absent: no tree)
    P:{regions}:next           store: the last version handed out (INCR)
    P:{regions}:<v>:units      store: the tree's units, code -> JSON [parent, level, name_hi, name_en] (hash)
    P:{regions}:<v>:levels     store: its levels, `id|name_hi|name_en, ...` (string); a new version is written
                               whole before `current` points at it, and the one before it is kept for readers
    P:{rl:<key>}               limiter: a token bucket (hash tokens, ts; expires when it would be full again)

    P:T:sync                   durability barrier of the town hall's slot (string "1", expires after 60 s): with
                               --ack-durability, written right before WAIT / WAITAOF (redis_conn.settle); likewise
                               P:{ch:<name>}:sync and P:{rl:<key>}:sync for the other tags

    P:T:presence               presence: node id -> local citizens listening (hash)
    P:T:presence:staff         presence: node id -> local leaders, moderators and admins listening (hash)
    P:T:presence:exp           presence: node id -> when its report expires, server time in ms (sorted set)
    P:T:rollup:nodes           rollup: node id -> when its report expires, server time in ms (sorted set)
    P:T:rollup:node:<id>:v     rollup: unit -> that node's citizens listening there or below; `screens|<unit>`,
                               `audience|<unit>` -> its booth screens and their people there or below (hash; gone
                               with the node)
    P:T:rollup:node:<id>:a     rollup: `<counter>|<unit>` -> that node's joins, asked, approved, reactions, votes (hash)
    P:T:rollup:retired         rollup: `<counter>|<unit>` -> the activity of nodes that died or closed (hash)

A town hall id is used as-is inside the tag unless it contains `{`, `}` or `%`, which are percent-encoded so the
tag always closes where it should and different ids never share a name.
"""

from __future__ import annotations

from dataclasses import dataclass

from jansamvad.channels import Channel
from jansamvad.models import QState


def _escape(name: str) -> str:
    return name.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def townhall_tag(th: str) -> str:
    return "{th:" + _escape(th) + "}"


@dataclass(frozen=True, slots=True)
class ChannelKeys:
    seq: str
    hist: str
    pub: str  # the sharded pub/sub channel
    pubkeys: str  # idempotency keys of publish_once: key -> seq (hash, expires a day after the last one)
    kept: str  # the channel's latest kept message (publish_kept; expires a day after it was written)


@dataclass(frozen=True, slots=True)
class QuestionKeys:
    hash: str
    log: str
    voters: str
    claim: str


@dataclass(frozen=True, slots=True)
class PollKeys:
    hash: str
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
        return QuestionKeys(key, key + ":log", key + ":voters", key + ":claim")

    def state(self, state: QState) -> str:
        return f"{self.base}:state:{state.value}"

    @property
    def rank(self) -> str:
        return self.base + ":rank"

    @property
    def group_rank(self) -> str:
        return self.base + ":group_rank"

    @property
    def group_public(self) -> str:
        return self.base + ":group_public"

    @property
    def groups(self) -> str:
        return self.base + ":groups"

    def recent(self, author: str) -> str:
        return f"{self.base}:recent:{author}"

    @property
    def reactions(self) -> str:
        return self.base + ":reactions"

    @property
    def pseq(self) -> str:
        return self.base + ":pseq"

    @property
    def polls(self) -> str:
        return self.base + ":polls"

    @property
    def poll_prefix(self) -> str:
        return self.base + ":poll:"

    def poll(self, pid: str) -> PollKeys:
        key = self.poll_prefix + pid
        return PollKeys(key, key + ":voters")

    @property
    def audit(self) -> str:
        return self.base + ":audit"

    def journal(self, kind: str) -> str:
        """The journal of one kind (`speech` or `notice`): the whole transcript, beyond the stream's history."""
        return f"{self.base}:journal:{kind}"

    @property
    def programme(self) -> str:
        return self.base + ":programme"

    def restriction(self, sub: str) -> str:
        return f"{self.base}:restriction:{sub}"

    @property
    def presence(self) -> str:
        return self.base + ":presence"

    @property
    def presence_staff(self) -> str:
        return self.base + ":presence:staff"

    @property
    def presence_expiry(self) -> str:
        return self.base + ":presence:exp"

    @property
    def rollup_nodes(self) -> str:
        return self.base + ":rollup:nodes"

    @property
    def rollup_retired(self) -> str:
        return self.base + ":rollup:retired"

    @property
    def rollup_node_prefix(self) -> str:
        """A node's hashes are this plus its node id plus `:v` (viewers) or `:a` (activity); scripts derive others'."""
        return self.base + ":rollup:node:"


@dataclass(frozen=True, slots=True)
class RegionKeys:
    base: str
    version: int | None

    @property
    def current(self) -> str:
        return self.base + ":current"

    @property
    def next(self) -> str:
        return self.base + ":next"

    @property
    def units(self) -> str:
        return f"{self.base}:{self.version}:units"

    @property
    def levels(self) -> str:
        return f"{self.base}:{self.version}:levels"


def asked_field(author: str, key: str) -> str:
    """The idempotency field of (author, key); the length prefix keeps it unambiguous whatever either contains."""
    return f"{len(author)}:{author}{key}"


def sync_key(name: str) -> str:
    """The durability barrier of the slot that holds `name`: the name up to its hash tag, then ":sync"."""
    start = name.find("{")
    end = name.find("}", start + 1) if start >= 0 else -1
    if start < 0 or end < 0 or end == start + 1:
        return "{" + name + "}:sync"  # no tag: the whole name is hashed, so it becomes the barrier's tag
    return name[: end + 1] + ":sync"


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        if not prefix or any(c in prefix for c in "{} \t\r\n"):
            raise ValueError("the Redis prefix must be non-empty, without braces or whitespace")
        self.prefix = prefix
        self.townhalls = prefix + ":townhalls"
        self.open_townhalls = prefix + ":townhalls:open"
        self.programmes = prefix + ":programmes"
        self._channels: dict[str, ChannelKeys] = {}

    def regions(self, version: int | None = None) -> RegionKeys:
        """The region tree's keys: all in the slot of the tag {regions}, so one primary holds a version whole."""
        return RegionKeys(f"{self.prefix}:{{regions}}", version)

    def rate_bucket(self, key: str) -> str:
        """A rate limiter's token bucket; each in its own slot (buckets are many and independent)."""
        return f"{self.prefix}:{{rl:{_escape(key)}}}"

    def townhall(self, th: str) -> TownhallKeys:
        return TownhallKeys(f"{self.prefix}:{townhall_tag(th)}")

    def channel(self, channel: str) -> ChannelKeys:
        """The keys and pub/sub channel of a logical broker channel (cached: the node uses a handful per town hall)."""
        keys = self._channels.get(channel)
        if keys is None:
            keys = self._channels[channel] = self._channel_keys(channel)
        return keys

    def _channel_keys(self, channel: str) -> ChannelKeys:
        parsed = Channel.parse(channel)
        if parsed.th:
            base = f"{self.prefix}:{townhall_tag(parsed.th)}" + (":" + parsed.stream if parsed.stream else "")
        else:
            base = f"{self.prefix}:{{ch:{_escape(channel)}}}"
        return ChannelKeys(base + ":seq", base + ":hist", base + ":pub", base + ":pubkeys", base + ":kept")

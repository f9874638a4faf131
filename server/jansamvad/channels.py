"""Channel names, in one place: what a node subscribes to on the broker and what its rooms are keyed by.

`th:<id>` is a town hall's public stream (history-bearing events, plus ephemeral audio and aggregates); `th:<id>:mod`
is its moderation stream to moderators and admins (queue notices, numbered `mseq` and kept in history like the public
stream, so a node that missed some while Redis stumbled fills them in and a moderator who reconnects resumes);
`th:<id>:audio` carries its leader's audio chunks (ephemeral, the latest init chunk kept; audio_channel.py), subscribed
by a node only while it has a listener in audio mode; `ctl` carries orders that concern sessions on every node
(kicking a banned citizen). Code that needs the town hall of a channel takes the name apart with `Channel.parse`, never
by slicing it.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTROL_CHANNEL = "ctl"
TOWNHALL_PREFIX = "th:"
MODERATION_STREAM = "mod"
AUDIO_STREAM = "audio"
STREAMS = (MODERATION_STREAM, AUDIO_STREAM)  # a town hall's channels besides its public one
MODERATION_SEQ = "mseq"  # the field that numbers the moderation stream's notices (the public stream's is "seq")


def public_channel(th: str) -> str:
    return f"{TOWNHALL_PREFIX}{th}"


def moderation_channel(th: str) -> str:
    return f"{TOWNHALL_PREFIX}{th}:{MODERATION_STREAM}"


def audio_channel(th: str) -> str:
    """The broker channel of a town hall's audio chunks (ephemeral; its latest init chunk is kept)."""
    return f"{TOWNHALL_PREFIX}{th}:{AUDIO_STREAM}"


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel name taken apart: the town hall it belongs to ("" for none, e.g. `ctl`) and which of its streams
    ("" for the public one, "mod" for moderation, "audio" for the leader's audio)."""

    th: str
    stream: str = ""

    @classmethod
    def parse(cls, name: str) -> Channel:
        if not name.startswith(TOWNHALL_PREFIX):
            return cls("")
        th = name[len(TOWNHALL_PREFIX) :]
        for stream in STREAMS:
            suffix = ":" + stream
            if th.endswith(suffix):  # from the end: a town hall id may itself contain ':'
                return cls(th[: -len(suffix)], stream)
        return cls(th)

    @property
    def is_public(self) -> bool:
        """A town hall's public stream (the one its listeners are counted in)."""
        return bool(self.th) and not self.stream

    @property
    def is_moderation(self) -> bool:
        return bool(self.th) and self.stream == MODERATION_STREAM

    @property
    def is_audio(self) -> bool:
        return bool(self.th) and self.stream == AUDIO_STREAM

    @property
    def name(self) -> str:
        if not self.th:
            raise ValueError("not a town hall's channel")
        return f"{public_channel(self.th)}:{self.stream}" if self.stream else public_channel(self.th)

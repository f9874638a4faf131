"""Listening modes (the data ladder) and the feeds the fan-out builds for them.

A session listens in one mode (`hello.mode`, changed with the `mode` message; docs/protocol.md section 4):

- `captions` (the default): every event and aggregate, no audio;
- `audio`: the same plus the leader's audio chunks, which travel on the town hall's own audio channel
  (`th:<id>:audio`, subscribed by a node only while it has a listener in this mode);
- `light`: text-light for a 2G data plan: final sentences only (no partial transcripts, `speech.final: false`), and
  the aggregates (`viewers`, `votes`, `reactions`, `poll_counts`) at most once every LIGHT_AGGREGATES_S.

A room's members are grouped by *feed*, one small int per (wire format, mode): the fan-out encodes each message once
per wire format and joins the frames of one tick into one blob per feed, and each member gets its feed's blob. So a
mode costs no per-connection filtering on the hot path: the write loop looks up `blobs[member.feed]` exactly as it
looked up the wire format before.
"""

from __future__ import annotations

import enum

from jansamvad.channels import audio_channel as audio_channel  # re-exported: the audio channel's name
from jansamvad.protocol.codec import Encoding


class Mode(enum.StrEnum):
    CAPTIONS = "captions"
    AUDIO = "audio"
    LIGHT = "light"


MODES: tuple[Mode, ...] = tuple(Mode)
MODE_OF: dict[str, Mode] = {str(mode): mode for mode in Mode}  # Mode(value), a dict lookup on the hello's path
ENCODINGS: tuple[Encoding, ...] = (Encoding.MSGPACK, Encoding.JSON)
FEED_COUNT = len(MODES) * len(ENCODINGS)

# Text-light listeners get the aggregates at most this often (the "at most every 5 s").
LIGHT_AGGREGATES_S = 5.0

# Partial transcripts, audio chunks and aggregates may wait this long for a must-deliver frame (a final sentence, a
# question) to share one write with (docs/architecture.md, "Coalescing"); must-deliver frames go out at the next tick.
COALESCE_S = 0.04


def feed_of(encoding: Encoding, mode: Mode) -> int:
    return ENCODINGS.index(encoding) * len(MODES) + MODES.index(mode)


def feed_parts(feed: int) -> tuple[Encoding, Mode]:
    return ENCODINGS[feed // len(MODES)], MODES[feed % len(MODES)]


DEFAULT_FEED = feed_of(Encoding.MSGPACK, Mode.CAPTIONS)


def is_partial(message: dict[str, object]) -> bool:
    """A partial transcript: text-light listeners never get it (the final sentence follows)."""
    return message.get("t") == "speech" and message.get("final") is False

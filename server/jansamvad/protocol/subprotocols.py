"""The subprotocol a node answers, and the hello a client may send inside its offer (docs/protocol.md, section 1).

A browser cannot send a frame before the 101, so a join costs two round trips: the upgrade, then the hello and its
welcome. On 2G (300-1,000 ms a round trip) the first one is most of a citizen's wait, and a flaky network pays it on
every reconnect. `Sec-WebSocket-Protocol` is the one header a browser lets a page set, and every item of it is an
RFC 9110 token, which base64url text is. So a client may put its hello there:

    Sec-WebSocket-Protocol: jansamvad.v1.json+hello, jansamvad.v1.json, jansamvad.v1.hello.<base64url of the hello>

The hello entry is the hello message encoded exactly as the session's frames are (msgpack, or JSON in UTF-8), in
base64url without padding. A node that takes it answers `jansamvad.v1.json+hello` and handles the hello as the first
message (its 101 then leaves in one write with the welcome and the snapshot); a node that does not know the `+hello`
names answers `jansamvad.v1.json`, and the client sends its hello as a message as before. Pure code: no I/O.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable

from jansamvad.protocol.codec import SUBPROTOCOLS, Encoding

HELLO_ENTRY_PREFIX = "jansamvad.v1.hello."
HELLO_SUFFIX = "+hello"
# The encodings' names with the hello in the offer: `jansamvad.v1.msgpack+hello`, `jansamvad.v1.json+hello`.
WITH_HELLO: dict[str, Encoding] = {enc.subprotocol + HELLO_SUFFIX: enc for enc in Encoding}
ENCODING_OF: dict[str, Encoding] = {**SUBPROTOCOLS, **WITH_HELLO}
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def choose(offered: Iterable[str]) -> tuple[str | None, str | None]:
    """The subprotocol to answer (None: none offered that the node speaks) and, when it is a `+hello` one, the text
    of the first hello entry offered (base64url, not yet decoded).

    The first offered name the node speaks wins, as for any subprotocol; a `+hello` name counts only when a hello entry
    is offered too (without one the client's next plain name is taken, and the client sends its hello as a message).
    """
    items = list(offered)
    hello = next((item[len(HELLO_ENTRY_PREFIX) :] for item in items if item.startswith(HELLO_ENTRY_PREFIX)), None)
    for name in items:
        if name in SUBPROTOCOLS:
            return name, None
        if hello is not None and name in WITH_HELLO:
            return name, hello
    return None, None


def hello_bytes(entry: str) -> bytes | None:
    """The hello message's bytes from a hello entry's text, or None when the text is not base64url without padding."""
    # The standard alphabet's two letters and padding are refused here; strict_mode refuses every other stranger.
    if len(entry) % 4 == 1 or "+" in entry or "/" in entry or "=" in entry:
        return None
    try:
        return binascii.a2b_base64(entry.encode().translate(_TO_STANDARD) + b"=" * (-len(entry) % 4), strict_mode=True)
    except binascii.Error:
        return None

"""The ids websockets gives its protocol objects, made without a syscall.

websockets' sans-I/O `Protocol.__init__` sets `self.id = uuid.uuid4()`, "useful in logs": 16 bytes from os.urandom
(a getrandom syscall) and a UUID built through its checking constructor, about 2.6 µs of the ~6 µs a
`ServerProtocol` costs, once per connection (docs/benchmarks.md, "Joins (issue 19)"). The node never logs these ids
(its websockets logger is at WARNING). `install()` gives the websockets protocol module a `uuid` namespace whose
`uuid4` counts up from a random start: still unique within the process and still a `uuid.UUID`, without the
syscall. (websockets 17 reads nothing else from `uuid`; a test checks that.)
"""

from __future__ import annotations

import itertools
import os
import uuid

from websockets import protocol as ws_protocol

_MASK = (1 << 128) - 1


class _CountingIds:
    """What websockets' protocol module uses of `uuid`: `UUID`, and a `uuid4()` that is the next of a counter
    started at a random 128-bit number."""

    UUID = uuid.UUID

    def __init__(self) -> None:
        self._next = itertools.count(int.from_bytes(os.urandom(16), "big"))

    def uuid4(self) -> uuid.UUID:
        # UUID's constructor checks its arguments; set the two slots directly (what UUID(int=...) ends up with).
        made = object.__new__(uuid.UUID)
        object.__setattr__(made, "int", next(self._next) & _MASK)
        object.__setattr__(made, "is_safe", uuid.SafeUUID.unknown)
        return made


def install() -> None:
    """Have websockets' protocols take their ids from the counter (idempotent)."""
    names = vars(ws_protocol)  # the module's globals: where its `uuid.uuid4()` looks `uuid` up
    if not isinstance(names["uuid"], _CountingIds):
        names["uuid"] = _CountingIds()

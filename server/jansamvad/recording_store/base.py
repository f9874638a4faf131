"""The ObjectStore interface: named blobs, written whole, read whole, listed by prefix.

It is all the record needs (docs/architecture.md, "The record"): the audio recorder writes the live chunks as
segment objects, and the record builder writes the rendered page, its JSON and one audio file per take. Keys are
relative paths of `[A-Za-z0-9._-]` segments separated by `/` (no `..`, no leading `/`), the same on disk and in S3.
"""

from __future__ import annotations

import re
from typing import Protocol

_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")


class BadKey(ValueError):
    """An object key that is not a safe relative path."""


def check_key(key: str) -> str:
    if len(key) > 512 or not _KEY.fullmatch(key) or ".." in key:
        raise BadKey(f"not a valid object key: {key!r}")
    return key


class ObjectStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write the object whole (readers see the old one or the new one, never a part)."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The object, or None when there is none."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's length in bytes, or None when there is none."""
        ...

    async def read_range(self, key: str, start: int, end: int) -> bytes | None:
        """Bytes `start` to `end` (inclusive, within the object) of the object, or None when there is none: a
        recording is served in pieces (HTTP Range), never read whole for one request."""
        ...

    async def list(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, sorted."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object (no error when there is none)."""
        ...

    async def close(self) -> None: ...

"""Objects as files under one directory (the embedded default). A put writes a temporary file and renames it over
the old one, so a reader never sees half an object. Several nodes may share the directory (a shared volume)."""

from __future__ import annotations

import asyncio
import builtins
import os
import tempfile
from pathlib import Path

from jansamvad.recording_store.base import ObjectStore, check_key


class FsObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._put, self._path(key), data)

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    async def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    async def size(self, key: str) -> int | None:
        path = self._path(key)
        try:
            stat = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return stat.st_size if path.is_file() else None

    async def read_range(self, key: str, start: int, end: int) -> bytes | None:
        return await asyncio.to_thread(self._read_range, self._path(key), start, end)

    @staticmethod
    def _read_range(path: Path, start: int, end: int) -> bytes | None:
        try:
            with path.open("rb") as file:
                file.seek(start)
                return file.read(max(0, end - start + 1))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    async def list(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> builtins.list[str]:
        # Walk only the directory the prefix names (its part up to the last `/`), not the whole root.
        folder = prefix.rpartition("/")[0]
        start = self.root / check_key(folder) if folder else self.root
        if not start.is_dir():
            return []
        keys = []
        for dirpath, _, files in os.walk(start):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(path.unlink, True)

    async def close(self) -> None:
        return None


_: type[ObjectStore] = FsObjectStore

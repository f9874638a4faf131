"""The object store a node's settings ask for: an S3-compatible bucket (`record_s3_url`) or a directory."""

from __future__ import annotations

import tempfile
from pathlib import Path

from jansamvad.recording_store.base import ObjectStore
from jansamvad.recording_store.fs import FsObjectStore
from jansamvad.recording_store.s3 import S3Config, S3ObjectStore


def default_record_dir() -> Path:
    return Path(tempfile.gettempdir()) / "jansamvad-records"


def open_object_store(record_dir: Path | None, s3_url: str) -> ObjectStore:
    if s3_url:
        return S3ObjectStore(S3Config.from_url(s3_url))
    return FsObjectStore(record_dir or default_record_dir())

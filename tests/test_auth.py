"""Tokens: issue, verify, refuse, and the cache of verified tokens."""

from __future__ import annotations

import time

import jwt
import pytest

from jansamvad.auth import InvalidToken, TokenService
from jansamvad.protocol.roles import Role

SECRET = "auth-test-secret-" + "x" * 32


def test_auth_issue_and_verify_round_trip() -> None:
    service = TokenService(SECRET)
    token, exp = service.issue(sub="c-1", role=Role.CITIZEN, th="abc", ttl_s=60, name="सीता", region="गया")
    claims = service.verify(token)
    assert (claims.sub, claims.role, claims.th, claims.name, claims.region, claims.exp) == (
        "c-1",
        Role.CITIZEN,
        "abc",
        "सीता",
        "गया",
        exp,
    )


def test_auth_cached_token_is_still_refused_once_expired() -> None:
    service = TokenService(SECRET, leeway_s=0)
    now = int(time.time())
    token = jwt.encode(
        {"sub": "c-1", "role": "citizen", "th": "abc", "iat": now, "exp": now + 1, "aud": "jansamvad"},
        SECRET,
        algorithm="HS256",
    )
    assert service.verify(token).sub == "c-1"  # verified, now cached
    time.sleep(1.2)
    with pytest.raises(InvalidToken, match="expired"):
        service.verify(token)


def test_auth_cache_does_not_accept_a_forged_token_with_another_signature() -> None:
    service = TokenService(SECRET)
    token, _ = service.issue(sub="c-1", role=Role.CITIZEN, th="abc", ttl_s=60)
    service.verify(token)
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-2]}AA"
    with pytest.raises(InvalidToken):
        service.verify(forged)


def test_auth_rs256_verifies_with_the_public_key_only() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    issuer = TokenService("", algorithm="RS256", private_key=private, public_key=public)
    verifier = TokenService("", algorithm="RS256", public_key=public)
    token, _ = issuer.issue(sub="l-1", role=Role.LEADER, th="abc", ttl_s=60)
    assert verifier.verify(token).role is Role.LEADER
    assert not verifier.can_issue
    hs_token, _ = TokenService(SECRET).issue(sub="x", role=Role.ADMIN, th="*", ttl_s=60)
    with pytest.raises(InvalidToken):  # algorithm confusion: an HS256 token is refused by an RS256 node
        verifier.verify(hs_token)

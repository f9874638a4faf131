"""Tokens: issue, verify, refuse, and the cache of verified tokens."""

from __future__ import annotations

import base64 as _base64
import hashlib as _hashlib
import hmac as _hmac
import json as _json
import time
from typing import Any

import jwt
import pytest
from hypothesis import given, settings, strategies as st

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
        {"sub": "c-1", "role": "citizen", "th": "abc", "iat": now, "exp": now + 2, "aud": "jansamvad"},
        SECRET,
        algorithm="HS256",
    )
    assert service.verify(token).sub == "c-1"  # verified (at least a second before it expires), now cached
    time.sleep(now + 2 - time.time() + 0.2)
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


def test_auth_cache_does_not_answer_a_changed_payload_with_a_cached_signature() -> None:
    # The cache holds whole tokens: a payload swapped under a signature it has seen is checked, and refused.
    service = TokenService(SECRET)
    token, _ = service.issue(sub="c-1", role=Role.CITIZEN, th="abc", ttl_s=60)
    other, _ = service.issue(sub="c-2", role=Role.LEADER, th="abc", ttl_s=60)
    service.verify(token)
    header, _, signature = token.split(".")
    swapped = f"{header}.{other.split('.')[1]}.{signature}"
    with pytest.raises(InvalidToken, match="Signature"):
        service.verify(swapped)
    assert service.verify(token).sub == "c-1"


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


# ---- the HS256 fast path gives PyJWT's answers (TokenService._decode_hs256 replaces jwt.decode on the join path)


def _b64(data: bytes) -> str:
    return _base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(header: Any, payload: Any, secret: str = SECRET) -> str:
    """A token signed with the secret around any JSON (or not-JSON) header and payload."""
    head = _b64(header if isinstance(header, bytes) else _json.dumps(header).encode())
    body = _b64(payload if isinstance(payload, bytes) else _json.dumps(payload).encode())
    signature = _hmac.new(secret.encode(), f"{head}.{body}".encode(), _hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def _pyjwt_accepts(token: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            audience="jansamvad",
            leeway=5,
            options={"require": ["sub", "role", "th", "exp", "aud"]},
        )
        return data
    except Exception:  # PyJWT's own errors, and the odd TypeError / OverflowError on absurd claim values
        return None


def _fast_accepts(token: str) -> dict[str, Any] | None:
    try:
        return TokenService(SECRET)._decode_hs256(token)
    except InvalidToken:
        return None


NOW = int(time.time())
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.lists(st.sampled_from(["jansamvad", "other", 1]), max_size=3),
    st.sampled_from([NOW - 100, NOW - 3, NOW + 3, NOW + 100, "jansamvad", "citizen", "c-1", "abc"]),
)
_claims = st.dictionaries(
    st.sampled_from(["sub", "role", "th", "exp", "aud", "iat", "nbf", "name", "rg", "x"]), _values, max_size=9
)
_headers = st.one_of(
    st.fixed_dictionaries(
        {"alg": st.sampled_from(["HS256", "none", "HS512", "RS256", "hs256", None]), "typ": st.just("JWT")}
    ),
    st.fixed_dictionaries({"alg": st.just("HS256"), "crit": st.just(["exp"])}),
    st.sampled_from([[], "HS256", 1, b"not json", b"\xff\xfe"]),
)
# Valid for a week from collection: the suite may reach these tests 20 minutes after NOW was read (it once expired).
_good_payload = {"sub": "c-1", "role": "citizen", "th": "abc", "exp": NOW + 7 * 24 * 3600, "aud": "jansamvad"}


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "aud", "sub", "role", "th"])
def test_auth_fast_hs256_refuses_a_null_claim_as_pyjwt_does(claim: str) -> None:
    # Rare for the property tests below to hit (every other claim must be right): a null exp once raised TypeError.
    token = _signed({"alg": "HS256", "typ": "JWT"}, {**_good_payload, "iat": NOW, "nbf": NOW, claim: None})
    assert _pyjwt_accepts(token) is None
    with pytest.raises(InvalidToken):
        TokenService(SECRET)._decode_hs256(token)


@settings(max_examples=400, deadline=None)
@given(header=_headers, payload=st.one_of(_claims, st.just(_good_payload), st.sampled_from([[1], "x", b"\x00"])))
def test_auth_fast_hs256_agrees_with_pyjwt_on_signed_headers_and_claims(header: Any, payload: Any) -> None:
    token = _signed(header, payload)
    assert _fast_accepts(token) == _pyjwt_accepts(token), token


@settings(max_examples=400, deadline=None)
@given(cut=st.integers(0, 400), insert=st.text(alphabet="A_-+/=.é\x00 ", max_size=3), drop=st.integers(0, 3))
def test_auth_fast_hs256_agrees_with_pyjwt_on_mangled_tokens(cut: int, insert: str, drop: int) -> None:
    good = _signed({"alg": "HS256", "typ": "JWT"}, _good_payload)
    cut %= len(good) + 1
    token = good[:cut] + insert + good[cut + drop :]
    assert _fast_accepts(token) == _pyjwt_accepts(token), token
    for other in (_signed({"alg": "HS256"}, _good_payload, secret=SECRET + "x"), good + ".", "." + good):
        assert _fast_accepts(other) is None and _pyjwt_accepts(other) is None


def test_auth_fast_hs256_refuses_standard_base64_spellings_of_the_signature() -> None:
    """Found by the property test above: `+` for `-` (or `/` for `_`) in the signature must not verify."""
    for url, std in (("-", "+"), ("_", "/")):
        # A valid token whose signature has the character (about every other token does; bounded search).
        good = next(
            token
            for n in range(1000)
            if url in (token := _signed({"alg": "HS256"}, {**_good_payload, "name": str(n)})).rpartition(".")[2]
        )
        head, _, signature = good.rpartition(".")
        other = f"{head}.{signature.replace(url, std, 1)}"
        assert _fast_accepts(good) is not None
        assert _fast_accepts(other) is None and _pyjwt_accepts(other) is None


_WARM = TokenService(SECRET)  # has verified the usual header once: the later tokens take the known-header path
_WARM._decode_hs256(_signed({"alg": "HS256", "typ": "JWT"}, _good_payload))


@settings(max_examples=400, deadline=None)
@given(cut=st.integers(0, 400), insert=st.text(alphabet="A_-+/=.é\x00 ", max_size=3), drop=st.integers(0, 3))
def test_auth_fast_hs256_with_a_known_header_agrees_with_pyjwt_on_mangled_tokens(
    cut: int, insert: str, drop: int
) -> None:
    good = _signed({"alg": "HS256", "typ": "JWT"}, {**_good_payload, "name": str(cut)})
    cut %= len(good) + 1
    token = good[:cut] + insert + good[cut + drop :]
    try:
        fast: dict[str, Any] | None = _WARM._decode_hs256(token)
    except InvalidToken:
        fast = None
    assert fast == _pyjwt_accepts(token), token
    with pytest.raises(InvalidToken):  # a header never seen is still checked in full: alg none is refused
        _WARM._decode_hs256(_signed({"alg": "none", "typ": "JWT"}, _good_payload))


def test_auth_fast_hs256_decodes_a_header_it_checked_before_only_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import jansamvad.auth as auth

    decoded: list[str] = []
    real = auth._b64decode

    def counting(part: str) -> bytes:
        decoded.append(part)
        return real(part)

    monkeypatch.setattr(auth, "_b64decode", counting)
    service = TokenService(SECRET)
    first, second = (service.issue(sub=f"c-{n}", role=Role.CITIZEN, th="abc", ttl_s=60)[0] for n in (1, 2))
    assert service.verify(first).sub == "c-1" and service.verify(second).sub == "c-2"
    header = first.partition(".")[0]
    assert decoded.count(header) == 1  # the second token's header (the same segment) is not decoded again
    assert len(decoded) == 5

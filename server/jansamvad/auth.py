"""Tokens: JWTs that say who the holder is (sub), what they may do (role) and where (th)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from jansamvad.protocol.codec import loads_json
from jansamvad.protocol.roles import Role

AUDIENCE = "jansamvad"
VERIFIED_CACHE_SIZE = 50_000
ANY_TOWNHALL = "*"


REQUIRED_CLAIMS = ("sub", "role", "th", "exp", "aud")
_TIME_CLAIMS = ("exp", "nbf", "iat")
_ROLES = {str(role): role for role in Role}  # Role(value) for a str, as a dict lookup (an enum call is ~0.4 µs)


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64decode(part: str) -> bytes:
    """Strict base64url without padding, as JWS uses it: any other character is an error, not skipped. That includes
    standard base64's `+` and `/`, which would otherwise decode like `-` and `_` after the translation below (a second
    spelling of the same signature). A non-ASCII character fails the encode (UnicodeEncodeError, a ValueError); the
    translation is bytes.translate's table lookup (str.translate with a mapping costs ~3 µs more per token)."""
    data = part.encode("ascii")
    if b"+" in data or b"/" in data:
        raise binascii.Error("not base64url")
    return binascii.a2b_base64(data.translate(_FROM_URLSAFE) + b"=" * (-len(data) % 4), strict_mode=True)


class InvalidToken(Exception):
    """The token is missing, forged, malformed, expired, or not for us."""


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    role: Role
    th: str
    name: str
    region: str
    exp: int
    unit: str = ""  # the region unit's code (`ru`), set by the join API only after checking it against the tree
    # A moderator's scope (`sc`): the region unit whose subtree it moderates, checked against the tree when minted;
    # "" for a town-hall-wide (root) moderator. moderation/scope.py enforces it.
    scope: str = ""

    def allows_townhall(self, th: str) -> bool:
        return self.th == th or (self.role is Role.ADMIN and self.th == ANY_TOWNHALL)


class TokenService:
    """Issues and verifies tokens with one configured algorithm (HS256 with a secret, or RS256 with a key pair)."""

    def __init__(
        self,
        secret: str,
        *,
        algorithm: str = "HS256",
        private_key: str | None = None,
        public_key: str | None = None,
        leeway_s: int = 5,
    ) -> None:
        if algorithm not in ("HS256", "RS256"):
            raise ValueError("algorithm must be HS256 or RS256")
        if algorithm == "RS256" and not public_key:
            raise ValueError("RS256 needs a public key")
        self.algorithm = algorithm
        self._secret = secret.encode()
        self._signing_key: str | bytes | None = private_key if algorithm == "RS256" else self._secret
        self._verify_key: str | bytes | jwt.PyJWK = (
            public_key if (algorithm == "RS256" and public_key) else self._secret
        )
        self._leeway = leeway_s
        # Verified tokens, whole (about 0.4 KB each): a reconnecting client presents the same token again (a
        # reconnect storm is mostly that). Keyed by the whole token, not its signature, so that a token whose header
        # or payload was changed is never answered from here. Expiry is still checked on every use.
        self._verified: OrderedDict[str, Claims] = OrderedDict()
        # The header segment of the last token whose header passed the checks below: every token this service
        # issues has the same one, so a join decodes and checks only the payload (~3 µs less per new token).
        self._good_header = ""
        # HMAC-SHA256 keyed once: a copy per token skips hashing the key's two pads again (~0.6 µs a token).
        self._keyed = hmac.new(self._secret, digestmod=hashlib.sha256)

    @property
    def can_issue(self) -> bool:
        return self._signing_key is not None

    def issue(
        self,
        *,
        sub: str,
        role: Role,
        th: str,
        ttl_s: int,
        name: str = "",
        region: str = "",
        unit: str = "",
        scope: str = "",
    ) -> tuple[str, int]:
        if self._signing_key is None:
            raise InvalidToken("this node has no signing key (RS256 without a private key)")
        now = int(time.time())
        exp = now + ttl_s
        claims: dict[str, Any] = {"sub": sub, "role": str(role), "th": th, "iat": now, "exp": exp, "aud": AUDIENCE}
        if name:
            claims["name"] = name
        if region:
            claims["rg"] = region
        if unit:
            claims["ru"] = unit
        if scope:
            claims["sc"] = scope
        return jwt.encode(claims, self._signing_key, algorithm=self.algorithm), exp

    def verify(self, token: str) -> Claims:
        cached = self._verified.get(token)
        if cached is not None:
            if cached.exp + self._leeway < time.time():
                raise InvalidToken("token expired")
            self._verified.move_to_end(token)
            return cached
        claims = self._verify(token)
        self._verified[token] = claims
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str) -> Claims:
        data = self._decode_hs256(token) if self.algorithm == "HS256" else self._decode_pyjwt(token)
        raw_role = data["role"]
        role = _ROLES.get(raw_role) if type(raw_role) is str else None  # what Role(raw_role) accepts, no enum call
        if role is None:
            raise InvalidToken("unknown role")
        sub, th = data["sub"], data["th"]
        if not isinstance(sub, str) or not isinstance(th, str):
            raise InvalidToken("malformed claims")
        get = data.get
        return Claims(
            sub,
            role,
            th,
            str(get("name", "")),
            str(get("rg", "")),
            int(data["exp"]),
            str(get("ru", "")),
            str(get("sc", "")),
        )

    def _decode_pyjwt(self, token: str) -> dict[str, Any]:
        try:
            # `algorithms` is a one-element allow-list: alg "none" and algorithm confusion are refused by PyJWT.
            data: dict[str, Any] = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self.algorithm],
                audience=AUDIENCE,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"invalid token: {type(exc).__name__}") from None
        return data

    def _decode_hs256(self, token: str) -> dict[str, Any]:
        """HS256 only, the join path's hot spot: PyJWT's generic decode cost ~140 µs per new token (28 % of a
        handshake, docs/benchmarks.md); this is one HMAC, two or three base64 decodes and the payload's JSON. The
        rules are PyJWT's, and tests/test_auth.py checks that both give the same answer for valid and mutated tokens:
        the signature is checked first (constant time), then `alg` must be HS256 (no "none", no confusion), no
        `crit`, required claims present, `exp` / `nbf` / `iat` numbers within the leeway, our audience."""
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("invalid token: DecodeError")
        known_header = parts[0] == self._good_header  # decoded and checked before: the same bytes pass the same way
        try:
            header_raw = b"" if known_header else _b64decode(parts[0])
            payload_raw, signature = _b64decode(parts[1]), _b64decode(parts[2])
            signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise InvalidToken("invalid token: DecodeError") from None
        mac = self._keyed.copy()
        mac.update(signing_input)
        if not hmac.compare_digest(signature, mac.digest()):
            raise InvalidToken("invalid token: InvalidSignatureError")
        try:
            header = None if known_header else json.loads(header_raw)
            payload = loads_json(payload_raw)  # json.loads's answer, faster (protocol/codec.py)
        except ValueError:
            raise InvalidToken("invalid token: DecodeError") from None
        if not known_header:
            if not isinstance(header, dict) or header.get("alg") != "HS256" or "crit" in header:
                raise InvalidToken("invalid token: InvalidAlgorithmError")
            self._good_header = parts[0]
        if not isinstance(payload, dict):
            raise InvalidToken("invalid token: DecodeError")
        get = payload.get
        for claim in REQUIRED_CLAIMS:
            if get(claim) is None:  # PyJWT: a null claim is a missing one
                raise InvalidToken("invalid token: MissingRequiredClaimError")
        now = time.time()
        for claim in _TIME_CLAIMS:
            if claim not in payload:
                continue
            value = payload[claim]  # a number; null, a string or a bool is refused (PyJWT refuses null too)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidToken("invalid token: DecodeError")
        if payload["exp"] <= now - self._leeway:
            raise InvalidToken("token expired")
        if "nbf" in payload and payload["nbf"] > now + self._leeway:
            raise InvalidToken("invalid token: ImmatureSignatureError")
        if "iat" in payload and payload["iat"] > now + self._leeway:
            raise InvalidToken("invalid token: ImmatureSignatureError")
        aud = payload["aud"]
        if not (aud == AUDIENCE or (isinstance(aud, list) and AUDIENCE in aud)):
            raise InvalidToken("invalid token: InvalidAudienceError")
        return payload

    def citizen_subject(self, device_id: str | None) -> str:
        """A stable, anonymous id for a browser: a keyed hash of the id it keeps, or a fresh random one."""
        if not device_id:
            return "c-" + secrets.token_hex(10)
        digest = hmac.new(self._secret, b"citizen:" + device_id.encode(), hashlib.sha256).digest()
        return "c-" + base64.b32encode(digest[:10]).decode("ascii").lower()

"""Tokens: JWTs that say who the holder is (sub), what they may do (role) and where (th)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from jansamvad.protocol.roles import Role

AUDIENCE = "jansamvad"
VERIFIED_CACHE_SIZE = 50_000
ANY_TOWNHALL = "*"


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
        if algorithm == "HS256" and self._secret:
            # A prepared key: PyJWT otherwise prepares (and inspects) the key again on every decode.
            k = base64.urlsafe_b64encode(self._secret).rstrip(b"=").decode()
            self._verify_key = jwt.PyJWK.from_dict({"kty": "oct", "k": k}, algorithm="HS256")
        self._leeway = leeway_s
        # Verified tokens by signature: a reconnecting client presents the same token again (a reconnect storm is
        # mostly that), and a signature identifies its token. Expiry is still checked on every use.
        self._verified: OrderedDict[str, Claims] = OrderedDict()

    @property
    def can_issue(self) -> bool:
        return self._signing_key is not None

    def issue(self, *, sub: str, role: Role, th: str, ttl_s: int, name: str = "", region: str = "") -> tuple[str, int]:
        if self._signing_key is None:
            raise InvalidToken("this node has no signing key (RS256 without a private key)")
        now = int(time.time())
        exp = now + ttl_s
        claims: dict[str, Any] = {"sub": sub, "role": str(role), "th": th, "iat": now, "exp": exp, "aud": AUDIENCE}
        if name:
            claims["name"] = name
        if region:
            claims["rg"] = region
        return jwt.encode(claims, self._signing_key, algorithm=self.algorithm), exp

    def verify(self, token: str) -> Claims:
        signature = token.rpartition(".")[2]
        cached = self._verified.get(signature) if len(signature) >= 40 else None
        if cached is not None:
            if cached.exp + self._leeway < time.time():
                raise InvalidToken("token expired")
            self._verified.move_to_end(signature)
            return cached
        claims = self._verify(token)
        if len(signature) >= 40:
            self._verified[signature] = claims
            if len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str) -> Claims:
        try:
            # `algorithms` is a one-element allow-list: alg "none" and algorithm confusion are refused by PyJWT.
            data = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self.algorithm],
                audience=AUDIENCE,
                leeway=self._leeway,
                options={"require": ["sub", "role", "th", "exp", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"invalid token: {type(exc).__name__}") from None
        try:
            role = Role(data["role"])
        except ValueError:
            raise InvalidToken("unknown role") from None
        sub, th = data["sub"], data["th"]
        if not isinstance(sub, str) or not isinstance(th, str):
            raise InvalidToken("malformed claims")
        return Claims(sub, role, th, str(data.get("name", "")), str(data.get("rg", "")), int(data["exp"]))

    def citizen_subject(self, device_id: str | None) -> str:
        """A stable, anonymous id for a browser: a keyed hash of the id it keeps, or a fresh random one."""
        if not device_id:
            return "c-" + secrets.token_hex(10)
        digest = hmac.new(self._secret, b"citizen:" + device_id.encode(), hashlib.sha256).digest()
        return "c-" + base64.b32encode(digest[:10]).decode("ascii").lower()

"""Exceptions of the sans-I/O core.

ProtocolViolation       a message broke the protocol: answer with an `error` (connection stays open)
ConnectionRefused       the session must end: close with a registry close code
"""

from __future__ import annotations

from jansamvad.protocol.codes import CloseCode, ErrorCode


class ProtocolViolation(Exception):
    """A client message that gets an `error` answer; the connection stays open."""

    def __init__(
        self,
        code: ErrorCode,
        msg: str,
        *,
        field: str | None = None,
        re: int | None = None,
        retry_ms: int | None = None,
    ) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.field = field
        self.re = re
        self.retry_ms = retry_ms


class ConnectionRefused(Exception):
    """The session must end with a close code from the registry."""

    def __init__(self, code: CloseCode, detail: str = "") -> None:
        super().__init__(f"{code.name}: {detail}" if detail else code.name)
        self.code = code
        self.detail = detail

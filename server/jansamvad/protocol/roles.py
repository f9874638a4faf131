"""Roles a token can carry (docs/protocol.md, section 3)."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    CITIZEN = "citizen"
    MODERATOR = "moderator"
    LEADER = "leader"
    ADMIN = "admin"


ANY_ROLE = frozenset(Role)
STAFF = frozenset({Role.MODERATOR, Role.LEADER, Role.ADMIN})

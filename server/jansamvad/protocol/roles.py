"""Roles a token can carry (docs/protocol.md, section 3)."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    CITIZEN = "citizen"
    MODERATOR = "moderator"
    LEADER = "leader"
    ADMIN = "admin"
    SCREEN = "screen"  # a booth screen: listens, and says how many people watch it (jansamvad/screens.py)


ANY_ROLE = frozenset(Role)
STAFF = frozenset({Role.MODERATOR, Role.LEADER, Role.ADMIN})

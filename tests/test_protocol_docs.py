"""docs/protocol.md matches the code: every documented message type, field, role, error and close code."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

from jansamvad.protocol.codes import CLOSE_CODES, ErrorCode
from jansamvad.protocol.messages import CLIENT_MESSAGES, SERVER_MESSAGES
from jansamvad.protocol.roles import Role

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "protocol.md").read_text()


def section(title_start: str) -> str:
    start = DOC.index("\n" + title_start)
    end = DOC.find("\n## ", start + 1)
    sub_end = DOC.find("\n### ", start + 1)
    if title_start.startswith("### ") and sub_end != -1:
        end = min(e for e in (end, sub_end) if e != -1)
    return DOC[start:end]


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]  # without the header


def backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_docs_list_every_client_message_with_its_roles_and_fields() -> None:
    rows = table_rows(section("## 4."))
    documented = {}
    for row in rows:
        names = backticked(row[0])
        if names and names[0] in CLIENT_MESSAGES:
            documented[names[0]] = row
    assert set(documented) == set(CLIENT_MESSAGES)
    for name, row in documented.items():
        spec = CLIENT_MESSAGES[name]
        roles_cell = row[2]
        if "any" in roles_cell:
            assert spec.roles == frozenset(Role), name
        else:
            assert {Role(r.strip()) for r in roles_cell.split(",")} == spec.roles, name
        for field in spec.field_names():
            assert f"`{field}`" in row[1], f"{name}.{field} is not documented"


def test_docs_list_every_server_message_and_no_undeclared_field() -> None:
    rows = table_rows(section("## 5."))
    documented = {backticked(row[0])[0]: row for row in rows}
    assert set(documented) == set(SERVER_MESSAGES)
    envelope = {"seq", "re", "t"}
    for name, row in documented.items():
        words = {w for w in backticked(row[1]) if re.fullmatch(r"[a-z_]+", w)}
        declared = SERVER_MESSAGES[name] | envelope
        fields = {w for w in words if w in declared}
        assert SERVER_MESSAGES[name] <= fields, f"{name}: undocumented fields {SERVER_MESSAGES[name] - fields}"


def test_docs_error_table_is_the_error_registry() -> None:
    rows = table_rows(section("### 6.1"))
    assert [backticked(r[0])[0] for r in rows] == [str(code) for code in ErrorCode]


def test_docs_close_code_table_is_the_close_registry() -> None:
    rows = table_rows(section("### 6.2"))
    documented = {int(r[0]): (backticked(r[1])[0], r[3].startswith("yes")) for r in rows}
    assert documented == {int(c): (c.name.lower(), spec.reconnect) for c, spec in CLOSE_CODES.items()}


def test_protocol_package_imports_no_io_library() -> None:
    """The sans-I/O core: nothing in jansamvad.protocol imports asyncio, websockets, redis or starlette."""
    forbidden = {"asyncio", "websockets", "redis", "starlette", "uvicorn", "uvloop", "socket"}
    for path in (ROOT / "server" / "jansamvad" / "protocol").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
    code = (
        "import sys, jansamvad.protocol.codec, jansamvad.protocol.messages, jansamvad.protocol.codes;"
        "print(sorted(m for m in ('asyncio', 'websockets', 'redis', 'starlette') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# Settings a client can run into: each must have a row in section 10 (issue 13: the limits were nowhere).
CLIENT_VISIBLE_SETTINGS = {
    "max_connections",
    "max_connections_per_ip",
    "max_unjoined_per_ip",
    "max_joining",
    "ip_handshake_burst",
    "ip_handshakes_per_second",
    "failed_joins_per_minute_per_ip",
    "max_sessions_per_device",
    "ipv6_prefix",
    "handshakes_per_second",
    "http_head_timeout_s",
    "hello_timeout_s",
    "ping_interval_s",
    "ping_timeout_s",
    "max_pings_per_s",
    "max_message_bytes",
    "citizen_max_message_bytes",
    "max_buffered_bytes",
    "max_errors",
    "citizen_msgs_per_s",
    "citizen_msg_burst",
    "staff_msgs_per_s",
    "staff_msg_burst",
    "reactions_per_s",
    "reaction_burst",
    "ask_per_minute",
    "ask_per_minute_per_ip",
    "votes_per_minute",
    "staff_token_ttl_s",
    "citizen_token_ttl_s",
    "joins_per_minute_per_ip",
    "townhall_creates_per_minute",
    "max_open_townhalls",
    "max_staff_connections",
    "staff_handshakes_per_second",
    "join_timeout_s",
    "history_size",
    "snapshot_speech",
    "top_votes",
    "claim_ttl_s",
}


def _default_of(name: str) -> float:
    from jansamvad.protocol.messages import Limits
    from jansamvad.settings import Settings

    if name.startswith("limits."):
        return float(getattr(Limits(), name.removeprefix("limits.")))
    if "." in name:  # a module's constant: `http_app.X`, `client.X`, `joining.X`
        module, _, constant = name.rpartition(".")
        return float(getattr(importlib.import_module(f"jansamvad.{module}"), constant))
    return float(getattr(Settings(), name))


def test_docs_limits_table_states_every_client_limit_with_its_default() -> None:
    rows = table_rows(section("## 10."))
    documented: dict[str, str] = {}
    for line in section("## 10.").splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        setting = re.fullmatch(r"`([A-Za-z0-9_.]+)`", cells[1]) if len(cells) == 4 else None
        if line.startswith("|") and setting is not None:
            documented[setting.group(1)] = cells[2]
    assert rows and documented
    assert CLIENT_VISIBLE_SETTINGS <= set(documented), CLIENT_VISIBLE_SETTINGS - set(documented)
    for name, cell in documented.items():
        number = re.match(r"[\d,.]+", cell)
        assert number is not None, f"{name}: the default {cell!r} does not start with a number"
        assert float(number.group().replace(",", "")) == _default_of(name), f"{name}: the docs say {cell!r}"

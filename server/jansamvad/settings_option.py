"""How a setting is declared: its Option (help, --help section, flag, bounds) and `setting(...)`, the field maker.

Kept apart from `settings.py` so that the list of settings there stays one line each and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeVar

OPTION = "jansamvad.option"  # the key of a field's Option in its dataclass metadata
T = TypeVar("T")


class SettingsError(ValueError):
    """A setting has a value the node cannot run with; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Option:
    """How one setting appears on the command line (--<flag>) and in the environment (JANSAMVAD_<FLAG>)."""

    help: str
    group: str  # the section of `jansamvad serve --help` it is listed in
    flag: str = ""  # default: the field name with dashes
    min: float | None = None  # inclusive bounds of a number, checked while the flags are parsed
    max: float | None = None
    choices: tuple[str, ...] = ()
    # "file": the flag names a file whose text is the value (PEM keys); "dir": an existing directory.
    kind: Literal["", "file", "dir"] = ""
    hide_default: bool = False  # not shown in --help (a machine path)
    # A token-bucket burst: when not given on the CLI it is 4x this rate field's value (as it always was).
    burst_of: str = ""


def setting(
    default: T,
    help: str,
    group: str,
    *,
    flag: str = "",
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] = (),
    kind: Literal["", "file", "dir"] = "",
    hide_default: bool = False,
    burst_of: str = "",
) -> T:
    """A Settings field: its default and its Option (help text, --help section, flag name, bounds)."""
    option = Option(
        help,
        group,
        flag=flag,
        min=min,
        max=max,
        choices=choices,
        kind=kind,
        hide_default=hide_default,
        burst_of=burst_of,
    )
    return field(default=default, metadata={OPTION: option})

"""The `jansamvad serve` flags and JANSAMVAD_* environment variables, derived from the Settings declaration.

Every Settings field (and every size of its Limits) becomes one click option --<flag> with the environment variable
JANSAMVAD_<FLAG>, its default, bounds and help text taken from the field's Option (settings.py). Flags win over the
environment (click's order). `serve --help` lists them in the sections the Options name.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from jansamvad.protocol.messages import Limits
from jansamvad.settings import LIMIT_OPTIONS, OPTION, Option, Settings

ENV_PREFIX = "JANSAMVAD_"
LIMIT_PARAM = "limits__"  # the click parameter of a Limits size: limits__question_chars
BURST_FACTOR = 4  # a burst not given on the CLI is this many seconds' worth of its rate


def envvar(flag: str) -> str:
    """The environment variable of a flag: --redis-url is JANSAMVAD_REDIS_URL."""
    return ENV_PREFIX + flag.upper().replace("-", "_")


class SettingOption(click.Option):
    """A click option that knows its section in --help."""

    def __init__(self, decls: Sequence[str], *, group: str, **attrs: Any) -> None:
        super().__init__(decls, **attrs)
        self.group = group


class GroupedCommand(click.Command):
    """A command whose --help lists its options in sections (their `group`), in the order they are declared."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(getattr(param, "group", "Other options"), []).append(record)
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)


def _number_type(kind: type, option: Option) -> click.ParamType[Any]:
    if option.min is None and option.max is None:
        return click.INT if kind is int else click.FLOAT
    if kind is int:
        low = None if option.min is None else int(option.min)
        high = None if option.max is None else int(option.max)
        return click.IntRange(low, high)
    return click.FloatRange(option.min, option.max)


def _click_type(annotation: Any, option: Option) -> tuple[click.ParamType[Any], bool]:
    """The click type of a field's values, and whether the flag repeats (tuples)."""
    if typing.get_origin(annotation) is tuple:  # tuple[str, ...]: the flag repeats, the variable splits on spaces
        return click.STRING, True
    optional = [a for a in typing.get_args(annotation) if a is not type(None)]  # X | None
    base = optional[0] if optional else annotation
    if option.kind == "file":
        return click.Path(exists=True, dir_okay=False), False
    if base is Path:
        return click.Path(file_okay=False, exists=option.kind == "dir", path_type=Path), False
    if base in (int, float):
        return _number_type(base, option), False
    if option.choices:
        return click.Choice(option.choices), False
    return click.STRING, False


def _option(name: str, annotation: Any, default: Any, option: Option, flag: str) -> SettingOption:
    kind, multiple = _click_type(annotation, option)
    if option.kind == "file" or option.burst_of:
        default = None  # read from the file / derived from the rate after parsing
    help_text = option.help
    if option.burst_of:
        rate = Settings.__dataclass_fields__[option.burst_of].metadata[OPTION]
        rate_flag = rate.flag or option.burst_of.replace("_", "-")
        help_text = f"{help_text.rstrip('.')} (default: {BURST_FACTOR}x --{rate_flag})."
    shown = not option.hide_default and default not in (None, "", ())
    return SettingOption(
        ["--" + flag, name],
        group=option.group,
        type=kind,
        multiple=multiple,
        default=default,
        show_default=shown,
        envvar=envvar(flag),
        show_envvar=True,
        help=help_text,
    )


def _flag(name: str, option: Option) -> str:
    return option.flag or name.replace("_", "-")


def _declared_limits() -> list[dataclasses.Field[Any]]:
    return [size for size in dataclasses.fields(Limits) if size.name in LIMIT_OPTIONS]


def _declared_settings() -> list[dataclasses.Field[Any]]:
    """The Settings fields declared with setting(...). One declared without it keeps its default and has no flag
    (tests/test_settings_cli.py names it), rather than breaking every command at import."""
    return [spec for spec in dataclasses.fields(Settings) if OPTION in spec.metadata]


def setting_options() -> Iterator[SettingOption]:
    """One option per Settings field and per Limits size, in the order they are declared."""
    hints = typing.get_type_hints(Settings)
    limit_hints = typing.get_type_hints(Limits)
    for spec in dataclasses.fields(Settings):
        if spec.name == "limits":
            for size in _declared_limits():
                option = LIMIT_OPTIONS[size.name]
                flag = option.flag or "max-" + size.name.replace("_", "-")
                yield _option(LIMIT_PARAM + size.name, limit_hints[size.name], size.default, option, flag)
        elif OPTION in spec.metadata:
            option = spec.metadata[OPTION]
            yield _option(spec.name, hints[spec.name], spec.default, option, _flag(spec.name, option))


def settings_from_params(params: dict[str, Any]) -> Settings:
    """The Settings of parsed `serve` parameters (what setting_options() made; other parameters are ignored)."""
    values: dict[str, Any] = {}
    limits = {size.name: params[LIMIT_PARAM + size.name] for size in _declared_limits()}
    for spec in _declared_settings():
        option: Option = spec.metadata[OPTION]
        value = params[spec.name]
        if option.kind == "file":
            value = Path(value).read_text() if value else None
        elif isinstance(value, tuple | list):
            value = tuple(value)
        values[spec.name] = value
    for spec in _declared_settings():
        burst: Option = spec.metadata[OPTION]
        if burst.burst_of and values[spec.name] is None:
            values[spec.name] = max(1, int(BURST_FACTOR * values[burst.burst_of]))
    return Settings(**values, limits=Limits(**limits))

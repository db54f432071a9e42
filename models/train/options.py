"""TrainConfig's fields as command-line options, for both command lines.

One reading of the dataclass (:func:`field_options`) and two renderings: argparse
for ``python -m models.train.cli`` (:func:`add_argparse_options`) and click for
``streamrec train`` / ``streamrec trainer`` (:func:`click_options`). Every field
becomes ``--<field-with-dashes>``: a ``Literal`` field a choice, a bool
``--x/--no-x``, an optional number a value or ``none``. Values are checked by
TrainConfig itself (:func:`config_from_options`; click does it for each option
while parsing, so a bad value is a usage error).

Plain data and the standard library at import (click loads inside
:func:`click_options`), so building a command line loads no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from models.train.config import TrainConfig

NONE = "none"  # how an optional field's None is written on the command line


@dataclass(frozen=True)
class FieldOption:
    """One TrainConfig field as an option.

    ``type``: int, float, str or bool; ``choices``: a ``Literal`` field's values
    (else empty); ``optional``: ``None`` is allowed (written ``none``).
    """

    name: str
    flag: str
    type: type
    choices: tuple[str, ...]
    optional: bool
    default: Any
    help: str


def field_options(defaults: TrainConfig | None = None) -> list[FieldOption]:
    """Every TrainConfig field in declaration order, defaults taken from ``defaults`` (default ``TrainConfig()``)."""
    defaults = defaults or TrainConfig()
    hints = typing.get_type_hints(TrainConfig)
    out = []
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        args = typing.get_args(hint)
        choices: tuple[str, ...] = ()
        optional = type(None) in args
        if typing.get_origin(hint) is typing.Literal:
            base, choices = str, tuple(args)
        elif optional:
            base = next(t for t in args if t is not type(None))
        else:
            base = hint
        if base not in (int, float, str, bool):
            raise TypeError(f"TrainConfig.{f.name}: no command-line form for {hint!r}")
        out.append(FieldOption(name=f.name, flag="--" + f.name.replace("_", "-"), type=base, choices=choices,
                               optional=optional, default=getattr(defaults, f.name),
                               help=str(f.metadata.get("help", ""))))
    return out


def parse_value(option: FieldOption, text: str) -> Any:
    """``text`` as the field's type (``none`` -> ``None`` for an optional field); raises ``ValueError``."""
    if option.optional and text.strip().lower() == NONE:
        return None
    return option.type(text)


def config_from_options(values: Mapping[str, Any], defaults: TrainConfig | None = None) -> TrainConfig:
    """The TrainConfig of parsed options: ``values``' TrainConfig fields over ``defaults``' (others ignored).

    Raises ``ValueError`` naming every invalid field (TrainConfig's own check).
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return dataclasses.replace(defaults or TrainConfig(), **{k: v for k, v in values.items() if k in names})


def add_argparse_options(parser: argparse.ArgumentParser, defaults: TrainConfig | None = None) -> None:
    """Add every field to ``parser`` (dest = the field name)."""
    for opt in field_options(defaults):
        if opt.type is bool:
            parser.add_argument(opt.flag, action=argparse.BooleanOptionalAction, default=opt.default, help=opt.help)
        elif opt.choices:
            parser.add_argument(opt.flag, choices=opt.choices, default=opt.default, help=opt.help)
        else:
            parser.add_argument(opt.flag, type=_argparse_type(opt), default=opt.default, help=opt.help)


def _argparse_type(opt: FieldOption) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse_value(opt, text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {_kind(opt)}") from None

    convert.__name__ = opt.type.__name__  # argparse names the type in its messages
    return convert


def click_options(option: Callable[..., Any] | None = None, defaults: TrainConfig | None = None) -> list[Any]:
    """Every field as a click option decorator, made with ``option`` (default ``click.option``;
    Faust's ``faust.cli.option`` fits too). The parameter names are the field names."""
    import click

    option = option or click.option
    base = defaults or TrainConfig()
    out = []
    for opt in field_options(base):
        common = {"help": opt.help, "callback": _click_check(click, opt.name, base)}
        if opt.type is bool:
            out.append(option(f"{opt.flag}/--no-{opt.flag[2:]}", opt.name, default=opt.default, **common))
        elif opt.choices:
            out.append(option(opt.flag, opt.name, type=click.Choice(opt.choices), default=opt.default, **common))
        else:
            out.append(option(opt.flag, opt.name, type=_click_type(click, opt),
                              default=NONE if opt.default is None else opt.default, **common))
    return out


def _click_check(click: Any, name: str, base: TrainConfig) -> Callable[[Any, Any, Any], Any]:
    """TrainConfig's check of one value, while parsing: a bad one is a usage error (exit 2) naming the option."""

    def check(ctx: Any, param: Any, value: Any) -> Any:
        try:
            config_from_options({name: value}, base)
        except ValueError as e:
            raise click.BadParameter(str(e), ctx=ctx, param=param) from None
        return value

    return check


def _click_type(click: Any, opt: FieldOption) -> Any:
    if not opt.optional:
        return {int: click.INT, float: click.FLOAT, str: click.STRING}[opt.type]

    class OrNone(click.ParamType):
        name = f"{opt.type.__name__}|{NONE}"

        def convert(self, value: Any, param: Any, ctx: Any) -> Any:
            if value is None or (isinstance(value, opt.type) and not isinstance(value, bool)):
                return value
            try:
                return parse_value(opt, str(value))
            except ValueError:
                self.fail(f"{value!r} is not {_kind(opt)}", param, ctx)

    return OrNone()


def _kind(opt: FieldOption) -> str:
    kind = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[opt.type]
    return f"{kind} or {NONE}" if opt.optional else kind

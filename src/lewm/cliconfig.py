"""Command-line flags generated from the config dataclasses: one place per default.

Each field becomes `--field-name` with the field's docstring as its help and the dataclass
default shown; a flag left out keeps the default of the config it is applied to (a class's
own, or a preset's), so presets and the CLI never disagree.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """The docstring written under each field of a dataclass (`name: type = value` then a
    string literal), read from its source."""
    docs = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _scalar(tp):
    """The type a flag parses to (Optional[X] -> X), or None for fields the CLI cannot set."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else None
    return tp if tp in (int, float, str, bool) else None


def add_flags(parser, cls, skip=(), title: str | None = None, base=None) -> None:
    """Add `--name` for every settable field of dataclass `cls` (except `skip`); the help
    shows `base`'s value (an instance the verb starts from) or else the class default."""
    group = parser.add_argument_group(title or cls.__name__)
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    for f in dataclasses.fields(cls):
        tp = _scalar(hints[f.name])
        if f.name in skip or tp is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        default = getattr(base, f.name) if base is not None else default
        shown = "its default" if default is None else repr(default)
        kwargs = {"dest": f"{cls.__name__}.{f.name}", "default": argparse.SUPPRESS,
                  "help": f"{docs.get(f.name, '')} (default: {shown})".replace("%", "%%")}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"], kwargs["metavar"] = tp, f.name.upper()
        group.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def from_flags(args, cls, base=None):
    """`base` (default: `cls()`) with the fields given on the command line replaced."""
    prefix = f"{cls.__name__}."
    given = {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}
    return dataclasses.replace(base if base is not None else cls(), **given)


def describe_fields(cls, prefix: str = "") -> list[str]:
    """`key: doc (default)` lines for every field, nested configs as `group.key`."""
    lines, docs = [], field_docs(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            lines += describe_fields(type(default), f"{prefix}{f.name}.")
        else:
            lines.append(f"  {prefix}{f.name} = {default!r}: {docs.get(f.name, '')}")
    return lines


def add_plan_flags(parser) -> None:
    """`--planner` and the flags of every part of a PlanConfig, one group per part."""
    from lewm.planning.config import PARTS, PlanConfig

    parser.add_argument("--planner", dest="PlanConfig.planner", default=argparse.SUPPRESS,
                        help=f"{field_docs(PlanConfig)['planner']} (default: 'cem')")
    for name, cls in PARTS.items():
        add_flags(parser, cls, title=f"planning: {name} ({field_docs(PlanConfig)[name]})")


def plan_from_flags(args, base):
    """PlanConfig `base` with the planning flags given on the command line replaced."""
    from lewm.planning.config import PARTS

    parts = {name: from_flags(args, cls, getattr(base, name)) for name, cls in PARTS.items()}
    planner = vars(args).get("PlanConfig.planner", base.planner)
    return dataclasses.replace(base, planner=planner, **parts)

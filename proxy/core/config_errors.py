"""A pydantic ValidationError, said in the config file's own words.

The first problem becomes one line naming its place (``routes.r.search.ww``)
and what is allowed there: the keys of that section, a choice's values. A key
that belongs to another provider or mode says whose it is.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Union

from pydantic import BaseModel, Discriminator, Tag, ValidationError

_TYPE_WORDS = {"int": "an integer", "float": "a number", "string": "a string", "bool": "true or false",
               "dict": "a mapping", "list": "a list", "tuple": "a list", "model": "a mapping",
               "dataclass": "a mapping"}
_BOUNDS = {"greater_than_equal": "must be {} or more", "greater_than": "must be more than {}",
           "less_than_equal": "must be {} or less", "less_than": "must be less than {}"}


@dataclass
class _Step:
    name: str  # a key of the file
    type: Any  # the type found there (a union resolved to the variant its tag picked)
    unions: tuple = ()  # the discriminated unions it was picked from, outermost first


def explain(err: ValidationError, root: Any, prefix: str = "") -> str:
    e = err.errors()[0]
    steps = _walk(root, [str(p) for p in e["loc"]])
    names = [prefix] if prefix else []
    names += [s.name for s in steps]
    place = ".".join(n for n in names if n) or "config"
    if e["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        parent = steps[-2] if len(steps) > 1 else _Step("", root)
        return f"{place}: {_unknown_key(steps[-1].name, parent)}"
    if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return _bad_tag(place, e)
    return f"{place}: {_problem(e)}"


def _bad_tag(place: str, e: dict) -> str:
    ctx = e["ctx"]
    key = ctx["discriminator"].strip("'").removesuffix("()")
    if e["type"] == "union_tag_not_found":
        return f"{place}: missing required key {key}"
    return f"{place}.{key}: unknown value {ctx['tag']!r} (one of {ctx['expected_tags'].replace(chr(39), '')})"


def _problem(e: dict) -> str:
    kind, ctx = e["type"], e.get("ctx") or {}
    if kind == "missing":
        return "missing required key"
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx['expected'].replace(chr(39), '')}, got {e['input']!r}"
    if kind in _BOUNDS:
        return _BOUNDS[kind].format(next(iter(ctx.values())))
    if kind.endswith(("_type", "_parsing")):
        return f"expected {_TYPE_WORDS.get(kind.split('_')[0], kind)}, got {e['input']!r}"
    return e["msg"]


def _unknown_key(key: str, parent: _Step) -> str:
    known = ", ".join(sorted(_keys(parent.type)))
    # The innermost union first (another OpenAI mode), then the outer ones (another provider).
    owners = next((o for u in reversed(parent.unions) if (o := _owners(key, u))), [])
    if owners:
        return f"not an option of {_label(parent.type)}; it belongs to {' and '.join(owners)} (known here: {known})"
    return f"unknown key (known here: {known})"


def _walk(tp: Any, loc: list[str]) -> list[_Step]:
    """The places along `loc`; a discriminated union's tag in `loc` resolves the step before it."""
    steps: list[_Step] = []
    for part in loc:
        if _is_discriminated(tp):
            variant = _tagged(tp).get(part)
            if variant is None:
                break
            if steps:
                steps[-1] = _Step(steps[-1].name, variant, (*steps[-1].unions, tp))
            else:  # a union at the top (one upstream section on its own): a place with no name
                steps.append(_Step("", variant, (tp,)))
            tp = variant
            continue
        tp = _child(_strip(tp), part)
        steps.append(_Step(part, tp))
    return steps


def _child(tp: Any, key: str) -> Any:
    if typing.get_origin(tp) is dict:
        return typing.get_args(tp)[1]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        f = tp.model_fields.get(key)
        return None if f is None else f.annotation
    if dataclasses.is_dataclass(tp):
        return typing.get_type_hints(tp).get(key)
    return None


def _keys(tp: Any) -> set[str]:
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return set(tp.model_fields)
    if dataclasses.is_dataclass(tp):
        return {f.name for f in dataclasses.fields(tp)}
    return set()


def _owners(key: str, union: Any) -> list[str]:
    """The variants of `union` (another provider, another mode) that do have `key`."""
    out = []
    for variant in _tagged(union).values():
        leaves = _leaves(variant)
        having = [v for v in leaves if key in _keys(v)]
        if having and len(having) == len(leaves):
            out.append(_label(leaves[0], only_first=len(leaves) > 1))
        else:
            out += [_label(v) for v in having]
    return out


def _label(tp: Any, only_first: bool = False) -> str:
    fields = getattr(_strip(tp), "model_fields", {})
    bits = [f"{name} {f.default}" for name in ("provider", "mode", "kind")
            if (f := fields.get(name)) is not None and f.default is not None]
    return (bits[0] if only_first and bits else ", ".join(bits)) or getattr(_strip(tp), "__name__", str(tp))


def _leaves(tp: Any) -> list[Any]:
    if not _is_discriminated(tp) or typing.get_origin(_strip(tp)) is not Union:
        return [_strip(tp)]
    return [leaf for v in _tagged(tp).values() for leaf in _leaves(v)]


def _tagged(tp: Any) -> dict[str, Any]:
    """A discriminated union's variants by tag (a union of one is its one variant)."""
    inner = _strip(tp)
    if typing.get_origin(inner) is not Union:
        tag = next((m for m in getattr(tp, "__metadata__", ()) if isinstance(m, Tag)), None)
        return {str(tag.tag): inner} if tag is not None else {}
    out = {}
    for a in typing.get_args(inner):
        tag = next((m for m in getattr(a, "__metadata__", ()) if isinstance(m, Tag)), None)
        if tag is not None:
            out[str(tag.tag)] = a
    return out


def _strip(tp: Any) -> Any:
    """The type under Annotated[...] and Optional[...] wrappers (a union of several stays a union)."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        args = typing.get_args(tp)
        if typing.get_origin(tp) in (Union, types.UnionType) and type(None) in args and len(args) == 2:
            tp = next(a for a in args if a is not type(None))
            continue
        return tp


def _is_discriminated(tp: Any) -> bool:
    return any(isinstance(m, Discriminator) for m in getattr(tp, "__metadata__", ()))

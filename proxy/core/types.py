"""Internal values shared by the search, the samplers and the scorers.

Plain dataclasses: the wire protocols live in ``proxy/api/protocol_*.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from w2s.proxy.core.errors import InvalidRequest
from w2s.proxy.core.modes import ModeChange, SearchMode
from w2s.proxy.core.tools import OutputFormat, ToolCall, ToolSet

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Prompt:
    """What the user asked: chat messages, or a raw completion prompt.

    Every model renders it with its own template, so the upstream and the guides
    never need to share a vocabulary or a prompt format.
    """

    messages: tuple[dict, ...] | None = None  # OpenAI-style {"role", "content"} dicts
    text: str | None = None  # raw completion prompt (/v1/completions)
    # A trailing assistant message: every answer continues it (Anthropic
    # prefill, vLLM continue_final_message). Not part of the returned answer.
    prefill: str = ""
    tools: ToolSet | None = None  # functions the upstream may call (proxy/core/tools.py)
    output: OutputFormat | None = None  # JSON (under a schema) the answer must be

    @property
    def whole_answers(self) -> bool:
        """A tool call or a JSON answer cannot be cut into chunks: such a search draws whole answers."""
        return self.output is not None or (self.tools is not None and self.tools.callable)

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.text is None):
            raise ValueError("Prompt needs exactly one of messages or text")

    @classmethod
    def chat(cls, messages: list[dict]) -> "Prompt":
        msgs = [dict(m) for m in messages]
        prefill = ""
        if len(msgs) > 1 and msgs[-1].get("role") == "assistant" and not msgs[-1].get("tool_calls"):
            prefill = content_text(msgs.pop().get("content"))
        return cls(messages=tuple(msgs), prefill=prefill)

    @classmethod
    def raw(cls, text: str) -> "Prompt":
        return cls(text=text)

    def as_messages(self) -> list[dict]:
        """Messages view; a raw prompt becomes one user turn."""
        if self.messages is not None:
            return [dict(m) for m in self.messages]
        return [{"role": "user", "content": self.text}]

    def user_text(self) -> str:
        """The raw prompt, or the last user message (what `{prompt}` templates get)."""
        if self.text is not None:
            return self.text
        for m in reversed(self.messages or ()):
            if m.get("role") == "user":
                return content_text(m.get("content"))
        return ""

    def system_text(self) -> str | None:
        for m in self.messages or ():
            if m.get("role") in ("system", "developer"):
                return content_text(m.get("content"))
        return None


def content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


@dataclass(frozen=True)
class Continuation:
    """One chunk to draw: continue `prefix` (the partial answer) by at most `max_tokens`."""

    prefix: str
    max_tokens: int | None  # upstream tokens; None = until the model stops


@dataclass(frozen=True)
class SampleRequest:
    prompt: Prompt
    continuations: list[Continuation]
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def fold_prefill(self) -> "SampleRequest":
        """The prompt's prefill moved into every continuation's prefix.

        Upstreams see "prompt + prefill + partial answer" as one partial answer;
        the chunks they return are what follows it either way.
        """
        pre = self.prompt.prefill
        if not pre:
            return self
        conts = [Continuation(pre + c.prefix, c.max_tokens) for c in self.continuations]
        return replace(self, prompt=replace(self.prompt, prefill=""), continuations=conts)


@dataclass
class Chunk:
    """What the upstream wrote after one prefix. `error` set means this call failed."""

    text: str = ""
    finish_reason: FinishReason = "length"
    completion_tokens: int = 0  # upstream tokens generated
    prompt_tokens: int = 0  # upstream tokens read (prompt + prefix)
    error: str | None = None
    stop_sequence: str | None = None  # the stop string that ended it, when known
    tool_calls: tuple[ToolCall, ...] = ()  # a whole answer that calls tools (its text may be empty)
    cached_tokens: int = 0  # of prompt_tokens, read from the upstream's prompt cache (when it says)
    cache_write_tokens: int = 0  # of prompt_tokens, written to its prompt cache (Anthropic's cache_creation)


@dataclass
class SampleResult:
    chunks: list[Chunk]  # one per continuation, same order
    calls: int = 0  # upstream API calls made for this batch
    exact: bool = True  # False when the provider could not continue the prefix exactly
    # What the provider had to work around, in words the client sees (the response's `w2s.notes`):
    # an upstream that ignored n, reported no usage, echoed stop strings, could not hold the system prompt.
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScoreItem:
    text: str  # the whole partial response, not just the new chunk
    finished: bool  # appends the guide's EOS: "stopping here" is scored


@dataclass
class SearchParams:
    w: int = 2  # beams kept each round
    k: int = 2  # continuations per kept beam
    l: int | None = 10  # chunk length in upstream tokens; None = Best-of-N (one round)
    max_tokens: int = 128  # per answer, upstream tokens
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1  # distinct answers to return
    max_upstream_tokens: int | None = None  # budget for the whole search
    eos_on_length: bool = False  # paper's code also scores EOS for answers cut at max_tokens
    # Cheaper search (docs/cost.md). Adaptive expansion: a kept beam g behind the best kept beam's score gets
    # max(k_min, round(k * exp(-g / k_tau))) continuations (0: pruned). None: k for every beam.
    k_tau: float | None = None
    k_min: int = 1
    # Stop when decided: once the best kept beam has descended from the previous round's best for
    # `decide_after` rounds in a row, only the top n beams are continued (k each), the others pruned.
    decide_after: int | None = None
    # Early rejection: draw the first `reject_at` tokens of every chunk, score, and draw on only the top
    # `reject_keep` (None: w) to the chunk's end; the rest are cut there (search_early.py). None: whole chunks.
    reject_at: int | None = None
    reject_keep: int | None = None
    max_cost_usd: float | None = None  # money budget for the whole search (needs the upstream's prices)

    def validate(self) -> None:
        for name in ("w", "k", "max_tokens", "n"):
            if int(getattr(self, name)) < 1:
                raise InvalidRequest(f"{name} must be >= 1", param=name)
        if self.l is not None and self.l < 1:
            raise InvalidRequest("l must be >= 1 (or null for Best-of-N)", param="l")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidRequest("temperature must be in [0, 2]", param="temperature")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidRequest("top_p must be in (0, 1]", param="top_p")
        if self.max_upstream_tokens is not None and self.max_upstream_tokens < 1:
            raise InvalidRequest("max_upstream_tokens must be >= 1", param="max_upstream_tokens")
        self._validate_cheaper()

    def _validate_cheaper(self) -> None:
        if self.k_tau is not None and not self.k_tau > 0:
            raise InvalidRequest("k_tau must be > 0 (or null: k continuations for every beam)", param="k_tau")
        if not 0 <= self.k_min <= self.k:
            raise InvalidRequest("k_min must be in [0, k]", param="k_min")
        if self.decide_after is not None and self.decide_after < 1:
            raise InvalidRequest("decide_after must be >= 1 (or null)", param="decide_after")
        if self.reject_at is not None and (self.reject_at < 1 or self.l is None or self.reject_at >= self.l):
            raise InvalidRequest("reject_at must be >= 1 and below l (the chunk length): the tokens into a chunk "
                                 "where draws are scored and cut", param="reject_at")
        if self.reject_keep is not None and self.reject_keep < 1:
            raise InvalidRequest("reject_keep must be >= 1 (or null: w)", param="reject_keep")
        if self.max_cost_usd is not None and not self.max_cost_usd > 0:
            raise InvalidRequest("max_cost_usd must be > 0", param="max_cost_usd")


@dataclass
class CandidateTrace:
    text: str
    parent: int | None  # index in the previous round's candidates
    score: float | None
    finished: bool
    kept: bool
    finish_reason: FinishReason | None = None  # set when finished
    tokens: int = 0  # upstream completion tokens on this candidate's path
    tool_calls: tuple[ToolCall, ...] = ()  # a candidate that calls tools
    rejected: str | None = None  # why it cannot be returned (not JSON, not valid against the schema)
    pruned: bool = False  # kept, unfinished, but given no continuation (k_tau / decide_after): its path ends here
    cut_at: int | None = None  # cut this many tokens into its chunk by early rejection (reject_at): never kept
    draws: int | None = None  # continuations it gets next round (kept, unfinished beams)
    parts: dict[str, float] | None = None  # a mixture guide: each part's raw score (scorers/mixture.py)


@dataclass
class RoundTrace:
    index: int
    candidates: list[CandidateTrace]
    upstream_calls: int
    upstream_prompt_tokens: int
    upstream_completion_tokens: int
    scorer_tokens: int
    sample_seconds: float
    score_seconds: float
    failed_chunks: int = 0  # draws planned but lost (failed after retries): fewer candidates than planned
    exact: bool = True
    notes: list[str] = field(default_factory=list)
    upstream_cached_tokens: int = 0  # of the prompt tokens, read from the upstream's prompt cache
    upstream_cache_write_tokens: int = 0
    cost_usd: float | None = None  # this round's upstream cost, where the upstream has prices
    decided: bool = False  # decide_after: from this round on only the leading beam(s) are continued


@dataclass
class Answer:
    text: str
    score: float | None
    finish_reason: FinishReason
    completion_tokens: int  # upstream tokens on this answer's path
    stop_sequence: str | None = None  # the stop string that ended it, when known
    candidate: int | None = None  # its index among the last round's candidates: where its trace path ends
    tool_calls: tuple[ToolCall, ...] = ()  # an answer that calls tools: returned whole, in the API's shape


@dataclass
class SearchResult:
    answers: list[Answer]  # best first, distinct
    rounds: list[RoundTrace] = field(default_factory=list)
    upstream_calls: int = 0
    upstream_prompt_tokens: int = 0
    upstream_completion_tokens: int = 0
    scorer_tokens: int = 0
    budget_exhausted: bool = False
    mode: SearchMode = SearchMode.CBS  # what ran: the planned mode, or where a fallback took it
    mode_changes: list[ModeChange] = field(default_factory=list)  # each fallback, with its reason
    upstream: dict = field(default_factory=dict)  # what the upstream was found to do (its capabilities)
    lost_draws: int = 0  # draws that failed after their retries, over every round
    notes: list[str] = field(default_factory=list)  # every round's notes, each once
    upstream_cached_tokens: int = 0  # of upstream_prompt_tokens, read from the upstream's prompt cache
    upstream_cache_write_tokens: int = 0
    cost_usd: float | None = None  # upstream cost (proxy/core/cost.py), where the upstream has prices

    def note(self, *notes: str) -> None:
        self.notes.extend(n for n in notes if n not in self.notes)

    def fall_back(self, after: SearchMode, reason: str) -> None:
        """The one way a search's mode changes once planned: an explicit transition, said in the notes."""
        if after is self.mode:
            return
        self.mode_changes.append(ModeChange(self.mode, after, reason))
        self.mode = after
        self.note(reason)

    @property
    def best(self) -> Answer:
        return self.answers[0]

"""In-process Hugging Face causal LM: the embedded default upstream.

Batched sampling with left padding. It continues any prefix exactly (it
re-tokenizes prompt + partial answer, as a black-box completions API would),
so the search treats it like any other upstream. Requests from concurrent
searches are merged into one generate call (providers/generate_batcher.py).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from w2s.providers.chat_templates import load_chat_template
from w2s.providers.generate_batcher import GenerateBatcher, GenerateStats
from w2s.providers.prefix_cache import SHARE_MIN, PrefixCache, expanded, shared_len
from w2s.providers.prefix_cache import inputs as prefix_inputs
from w2s.providers.row_sampling import RowSampler, RowSettings, row_seed
from w2s.proxy.core import context
from w2s.proxy.core.config import LocalUpstream
from w2s.proxy.core.context import TokenCount
from w2s.proxy.core.errors import ContextLengthExceeded
from w2s.proxy.core.modes import DrawMode
from w2s.proxy.core.rendering import check_fits, render
from w2s.proxy.core.types import Chunk, Prompt, SampleRequest, SampleResult
from w2s.proxy.runtime.adapters import generate_kwargs
from w2s.proxy.runtime.kvcompat import cache_kw
from w2s.proxy.runtime.loading import LoadedModel, counting_tokenizer
from w2s.proxy.runtime.pool import ModelPool

UNBOUNDED = 1024  # a continuation with max_tokens=None stops here at the latest


class RowLimits(StoppingCriteria):
    """Each row of a merged batch stops at its own token limit."""

    def __init__(self, in_len: int, limits: list[int]):
        self.in_len = in_len
        self.limits = torch.tensor(limits)  # (B,)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        # input_ids: (B, in_len + generated so far)
        return (input_ids.shape[1] - self.in_len) >= self.limits.to(input_ids.device)  # (B,)


class LocalSampler:
    exact_continuation = True
    draw_mode = DrawMode.LOCAL

    def __init__(self, name: str, cfg: LocalUpstream, pool: ModelPool):
        self.name = name
        self.cfg = cfg
        self.pool = pool
        self.model_names = (cfg.model,)
        self.batcher = GenerateBatcher(self._run_batch, cfg.max_batch_rows)
        self.prefixes = PrefixCache()  # long prompts' KV caches (providers/prefix_cache.py), model thread only
        self.chat_template = load_chat_template(cfg.chat_template, name) if cfg.chat_template else None

    @classmethod
    def from_config(cls, name: str, cfg: LocalUpstream, pool: ModelPool) -> "LocalSampler":
        return cls(name, cfg, pool)

    @property
    def generate_stats(self) -> GenerateStats:
        """Merged generate calls so far (the engine shows them in /metrics)."""
        return self.batcher.stats

    async def start(self) -> None:
        # The pool has loaded the model; build the copy of its tokenizer that counts prompts (seconds
        # for a large vocabulary), so that the first request is not the one that waits for it.
        await asyncio.to_thread(counting_tokenizer, self.pool.get(self.cfg.model).tokenizer)

    async def prepare(self, continuation: bool) -> None:
        pass  # in process: every prefix is continued exactly

    @property
    def context_tokens(self) -> int | None:
        """The model's context (proxy/runtime/loading.py context_of)."""
        return self.pool.get(self.cfg.model).context_tokens

    async def count_prompt(self, prompt: Prompt, bound: int | None) -> TokenCount:
        """The prompt's tokens as this model reads them (proxy/core/context.py), off the event loop."""
        return await asyncio.to_thread(self._count_prompt, prompt, bound)

    def _count_prompt(self, prompt: Prompt, bound: int | None) -> TokenCount:
        m = self.pool.get(self.cfg.model)
        rendered = render(prompt, m.tokenizer, self.cfg.template, chat_template=self.chat_template)  # as _Batch.of
        enc, special = counting_tokenizer(m.tokenizer), rendered.add_special_tokens
        return context.count(rendered.text + prompt.prefill,
                             lambda t: len(enc.encode(t, add_special_tokens=special).ids), bound)

    def capabilities(self) -> dict:
        return {"continuation": "exact (in process)", "max_n": self.batcher.max_rows}

    async def sample(self, request: SampleRequest) -> SampleResult:
        notes: tuple[str, ...] = ()
        template = self.cfg.template
        turns = self.chat_template is not None and request.prompt.messages is not None
        if template is not None and not turns:  # checked here, before a merged generate call could carry it
            check_fits(request.prompt, template, self.name)
            if request.prompt.system_text() and "{system}" not in template:
                notes = (f"upstream {self.name!r}: its template has no place for the system prompt; "
                         "it was not sent",)
        markers = tuple(s for s in self.chat_template.stop if s not in request.stop) if turns else ()
        chunks = await self.batcher.submit(replace(request.fold_prefill(), stop=(*request.stop, *markers)))
        for c in chunks:  # the model began the next turn: the answer ended there (no stop string of the client's)
            c.stop_sequence = None if c.stop_sequence in markers else c.stop_sequence
        return SampleResult(chunks, calls=1, notes=notes)

    async def _run_batch(self, requests: list[SampleRequest]) -> list[list[Chunk]]:
        return await self.pool.run(self._generate, self.pool.get(self.cfg.model), requests)

    async def aclose(self) -> None:
        await self.batcher.aclose()

    def _generate(self, m: LoadedModel, reqs: list[SampleRequest]) -> list[list[Chunk]]:
        """One generate call for requests with the same stop strings (see generate_batcher.merge_key).

        A long prompt (prefix_cache.SHARE_MIN tokens or more) is prefilled once and its KV cache
        reused by every row and round; requests on different long prompts run one call each."""
        tok = m.tokenizer
        batch = _Batch.of(reqs, tok, self.cfg.template, self.chat_template)
        rows = [tok(t, add_special_tokens=batch.add_special)["input_ids"] for t in batch.texts]
        _check_window(m, rows, batch.limits, self.name)
        long_rows = max(len(r) for r in rows) >= SHARE_MIN
        prompts = {p: tok(p, add_special_tokens=batch.add_special)["input_ids"]
                   for p in dict.fromkeys(batch.prompts)} if long_rows else {}
        long_prompts = [p for p in prompts.values() if len(p) >= SHARE_MIN]
        if len(prompts) > 1 and long_prompts:
            return self._per_prompt(m, reqs, batch.prompts)
        shared = shared_len(rows, long_prompts[0]) if long_prompts else 0
        if shared >= SHARE_MIN:
            prefix = self.prefixes.get(m.model, rows[0][:shared], m.adapter)
            ids, mask = prefix_inputs(shared, rows, tok.pad_token_id)
            cache = expanded(prefix, len(rows))
        else:
            enc = tok(batch.texts, return_tensors="pt", padding=True, padding_side="left",
                      add_special_tokens=batch.add_special)
            ids, mask, cache = enc["input_ids"], enc["attention_mask"], None
        return _split(reqs, self._draw(m, batch, ids, mask, cache, tuple(reqs[0].stop) + tuple(self.cfg.stop)))

    def _per_prompt(self, m: LoadedModel, reqs: list[SampleRequest], prompts: list[str]) -> list[list[Chunk]]:
        """A merged call over several long prompts: one call per prompt (each with its own cache)."""
        at, by_prompt = 0, {}
        for r in reqs:
            by_prompt.setdefault(prompts[at], []).append(r)
            at += len(r.continuations)
        out = {id(r): c for group in by_prompt.values() for r, c in zip(group, self._generate(m, group))}
        return [out[id(r)] for r in reqs]

    def _draw(self, m: LoadedModel, batch: "_Batch", ids, mask, cache, stops: tuple) -> list[Chunk]:
        """One chunk per row: generate over ids (B, in_len) [after `cache`], cut at EOS or a stop."""
        tok, eos_ids, in_len = m.tokenizer, _eos_ids(m), ids.shape[1]
        gen_kw = _generate_kwargs(m, batch, eos_ids, in_len, stops)
        if cache is not None:
            gen_kw.update(cache_kw(cache))
        with torch.inference_mode():
            out = m.model.generate(input_ids=ids.to(m.device), attention_mask=mask.to(m.device),
                                   **gen_kw)  # (B, in_len + new)
        prompt_lens = mask.sum(dim=1).tolist()  # (B,)
        return [_chunk(tok, out[b, in_len:].tolist()[:limit], eos_ids, stops, int(prompt_lens[b]),
                       batch.texts[b][len(batch.prompts[b]):]) for b, limit in enumerate(batch.limits)]


def _split(reqs: list[SampleRequest], chunks: list[Chunk]) -> list[list[Chunk]]:
    """One chunk per row -> one list per request, in order."""
    out, at = [], 0
    for r in reqs:
        out.append(chunks[at: at + len(r.continuations)])
        at += len(r.continuations)
    return out


def _check_window(m: LoadedModel, rows: list[list[int]], limits: list[int], name: str) -> None:
    """ContextLengthExceeded before any forward pass when a row could run past the model's window."""
    window = m.context_tokens
    worst = max(len(r) + lim for r, lim in zip(rows, limits))
    if window is not None and worst > window:
        raise ContextLengthExceeded(
            f"upstream {name!r}: a draw needs {worst} tokens (prompt, partial answer and chunk), more than "
            f"its {window}-token context. Shorten the prompt or lower max_tokens.", limit=window)


@dataclass
class _Batch:
    """The rows of one merged generate call: one per continuation, requests in order."""

    texts: list[str]
    prompts: list[str]  # each row's rendered prompt (its text without the partial answer)
    limits: list[int]  # each row's own max new tokens
    rows: list[RowSettings]  # each row's own sampling settings and seed
    add_special: bool

    @classmethod
    def of(cls, reqs: list[SampleRequest], tok, template: str | None, chat_template=None) -> "_Batch":
        batch = cls([], [], [], [], True)
        for r in reqs:
            rendered = render(r.prompt, tok, template, chat_template=chat_template)
            batch.add_special = rendered.add_special_tokens  # one way of rendering per batch (merge_key)
            batch.texts += [rendered.text + c.prefix for c in r.continuations]
            batch.prompts += [rendered.text] * len(r.continuations)
            batch.limits += [c.max_tokens if c.max_tokens is not None else UNBOUNDED for c in r.continuations]
            batch.rows += [RowSettings(r.temperature, r.top_p, r.top_k, row_seed(r.seed, i))
                           for i in range(len(r.continuations))]
        return batch


def _eos_ids(m: LoadedModel) -> set[int]:
    eos = m.model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos if eos is not None else m.eos_id])
    ids.add(m.eos_id)
    return ids


def _generate_kwargs(m: LoadedModel, batch: _Batch, eos_ids: set[int], in_len: int, stops: tuple) -> dict:
    limits = batch.limits
    gen_kw = dict(
        do_sample=False,  # RowSampler draws; generate's greedy step takes its pick
        max_new_tokens=max(limits),
        pad_token_id=m.tokenizer.pad_token_id,
        eos_token_id=sorted(eos_ids),
    )
    if any(r.temperature > 0 for r in batch.rows):
        gen_kw.update(logits_processor=LogitsProcessorList([RowSampler(batch.rows)]))
    if min(limits) < max(limits):  # merged rows with other limits: each row stops at its own
        gen_kw.update(stopping_criteria=StoppingCriteriaList([RowLimits(in_len, limits)]))
    if stops:
        gen_kw.update(stop_strings=list(stops), tokenizer=m.tokenizer)
    # Weights shared with an adapter guide: every row runs with this model's own adapter (or none).
    gen_kw.update(generate_kwargs(m.model, m.adapter, len(batch.texts)))
    return gen_kw


def _first_stop(text: str, prefix: str, stops: tuple) -> tuple[int, str] | None:
    """(where in `text` to cut, the stop) for the first stop string that ends in `text`; it may begin in
    the end of `prefix` (then the cut is at 0, and the part of it in the prefix stays: it is sent)."""
    keep = max((len(s) for s in stops), default=1) - 1
    tail = prefix[max(0, len(prefix) - keep):]
    joined, best = tail + text, None
    for s in stops:
        at = joined.find(s, max(0, len(tail) - len(s) + 1)) if s else -1
        if at >= 0 and (best is None or at < best[0]):
            best = (at, s)
    return None if best is None else (best[0] - len(tail), best[1])


def _chunk(tok, new: list[int], eos_ids: set[int], stops: tuple, prompt_len: int, prefix: str = "") -> Chunk:
    """One row's new tokens -> its chunk: cut at EOS or the first stop string, also one that began at the
    end of the partial answer `prefix` (a stop split over two chunks: what of it is in the prefix stays)."""
    finish = "length"
    for i, t in enumerate(new):
        if t in eos_ids:
            new, finish = new[:i], "stop"
            break
    text = tok.decode(new, skip_special_tokens=True)
    n_tokens = len(new) + (1 if finish == "stop" else 0)
    hit = _first_stop(text, prefix, stops)
    matched = None
    if hit is not None:
        cut, matched = hit
        text, finish = text[:max(0, cut)], "stop"
    elif finish == "length":
        # A chunk may end inside a multi-byte character, or inside a stop string; drop the partial
        # bytes (and the partial stop) so the next round re-tokenizes clean text.
        text = text.rstrip("\ufffd")
        text = text[:len(text) - _partial_stop(text, prefix, stops)]
    return Chunk(text, finish, n_tokens, prompt_len, stop_sequence=matched)


def _partial_stop(text: str, prefix: str, stops: tuple) -> int:
    """How many characters at the end of `text` begin a stop string (2 characters of it or more, e.g.
    "\nUser" of "\nUser:"): held back, so the next round writes the whole stop and is cut there."""
    joined, held = prefix[-64:] + text, 0
    for s in stops:
        for k in range(min(len(s) - 1, len(joined)), 1, -1):
            if joined.endswith(s[:k]):
                held = max(held, min(k, len(text)))
                break
    return held

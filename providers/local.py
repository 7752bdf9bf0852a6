"""In-process Hugging Face causal LM: the embedded default upstream.

Batched sampling with left padding. It continues any prefix exactly (it
re-tokenizes prompt + partial answer, as a black-box completions API would),
so the search treats it like any other upstream.
"""
from __future__ import annotations

from proxy.config import UpstreamConfig
from proxy.types import Chunk, SampleRequest, SampleResult
from scorers.loading import LoadedModel, ModelPool
from scorers.template import render

UNBOUNDED = 1024  # a continuation with max_tokens=None stops here at the latest


class LocalSampler:
    exact_continuation = True

    def __init__(self, name: str, cfg: UpstreamConfig, pool: ModelPool):
        self.name = name
        self.cfg = cfg
        self.pool = pool
        self.model_names = (cfg.model,)

    @classmethod
    def from_config(cls, name: str, cfg: UpstreamConfig, pool: ModelPool) -> "LocalSampler":
        return cls(name, cfg, pool)

    async def sample(self, request: SampleRequest) -> SampleResult:
        model = self.pool.get(self.cfg.model)
        chunks = await self.pool.run(self._generate, model, request.fold_prefill())
        return SampleResult(chunks, calls=1)

    async def aclose(self) -> None:
        pass

    def _generate(self, m: LoadedModel, req: SampleRequest) -> list[Chunk]:
        import torch

        tok, model = m.tokenizer, m.model
        rendered = render(req.prompt, tok, self.cfg.template)
        stops = tuple(req.stop) + tuple(self.cfg.stop)
        limits = [c.max_tokens if c.max_tokens is not None else UNBOUNDED for c in req.continuations]
        texts = [rendered.text + c.prefix for c in req.continuations]
        enc = tok(texts, return_tensors="pt", padding=True, padding_side="left",
                  add_special_tokens=rendered.add_special_tokens)
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else m.eos_id])
        eos_ids.add(m.eos_id)
        if req.seed is not None:
            # The model thread is single: the global RNG is ours. Search seeds are derived
            # (seed * 1_000_003 + round) and a client may send any 64-bit seed: torch takes
            # 64 bits at most, so fold into that range rather than fail with an overflow.
            torch.manual_seed(req.seed % 2**64)
        sampling = req.temperature > 0
        gen_kw = dict(
            do_sample=sampling,
            max_new_tokens=max(limits),
            pad_token_id=tok.pad_token_id,
            eos_token_id=sorted(eos_ids),
        )
        if sampling:
            gen_kw.update(temperature=req.temperature, top_p=req.top_p, top_k=req.top_k or 0)
        if stops:
            gen_kw.update(stop_strings=list(stops), tokenizer=tok)
        with torch.inference_mode():
            out = model.generate(input_ids=enc["input_ids"].to(m.device),
                                 attention_mask=enc["attention_mask"].to(m.device), **gen_kw)
        in_len = enc["input_ids"].shape[1]
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        chunks = []
        for b, limit in enumerate(limits):
            new = out[b, in_len:].tolist()[:limit]
            finish = "length"
            for i, t in enumerate(new):
                if t in eos_ids:
                    new, finish = new[:i], "stop"
                    break
            text = tok.decode(new, skip_special_tokens=True)
            n_tokens = len(new) + (1 if finish == "stop" else 0)
            hits = sorted((text.find(s), s) for s in stops if s and s in text)
            matched = None
            if hits:
                cut, matched = hits[0]
                text, finish = text[:cut], "stop"
            elif finish == "length":
                # A chunk may end inside a multi-byte character; drop the partial
                # bytes so the next round re-tokenizes clean text.
                text = text.rstrip("\ufffd")
            chunks.append(Chunk(text, finish, n_tokens, int(prompt_lens[b]), stop_sequence=matched))
        return chunks

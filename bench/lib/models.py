"""Model-side helpers the scorer, adapter-pair and DPO benches share: the prompt and filler answer they score,
timing that waits for the device, and the real architecture with random weights for machines without the package."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

SYSTEM_T = "You are a film critic who writes glowing, enthusiastic, positive reviews."
SYSTEM_U = "You are a film critic who hates every movie and writes harsh, negative reviews."
PROMPT_TEXT = "Write a review of the movie you saw last weekend."

# Filler answer text, repeated to any length (only its token count matters).
REVIEW = (
    "The film opens on a quiet harbour at dawn, and for a while nothing much happens: a ferry comes in, "
    "a woman carries a suitcase up the hill, a dog follows her to the church. The director lets these "
    "scenes breathe, and the camera work is patient without being slow. When the story finally turns, "
    "halfway through, it does so with a phone call that changes everything for the family at its centre. "
    "The performances are careful and restrained; the score is mostly piano, with strings in the last act. "
    "Some viewers will find the ending abrupt, others will admire how little it explains. I left the "
    "theatre thinking about the mother's last line and about the shot of the empty kitchen before it. "
)

SLOW_CALL_S = 3.0  # on CPU, a call slower than this is timed once, without a warm-up run


def always_warm_up() -> None:
    """Accelerators: every call is timed after a warm-up (first calls pay for kernel selection)."""
    global SLOW_CALL_S
    SLOW_CALL_S = float("inf")


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, reps: int, min_seconds: float) -> float:
    """Median seconds of one call (after a warm-up, unless the call is slow)."""
    t0 = time.perf_counter()
    fn()
    sync(device)
    first = time.perf_counter() - t0
    if first > SLOW_CALL_S:
        return first
    times = []
    t_start = time.perf_counter()
    while len(times) < reps or (time.perf_counter() - t_start < min_seconds and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def atimed(fn, device, reps: int, min_seconds: float) -> float:
    async def once() -> float:
        t0 = time.perf_counter()
        await fn()
        sync(device)
        return time.perf_counter() - t0

    return await atimed_inner(once, reps, min_seconds)


async def atimed_inner(fn, reps: int, min_seconds: float) -> float:
    """`fn` returns its own seconds; median after a warm-up, unless the call is slow."""
    first = await fn()
    if first > SLOW_CALL_S:
        return first
    times = []
    t_start = time.perf_counter()
    while len(times) < reps or (time.perf_counter() - t_start < min_seconds and len(times) < 50):
        times.append(await fn())
    return statistics.median(times)


def random_model(shape_dir: str, dtype: str, device: str):
    """The model's architecture and tokenizer from `shape_dir` (see --save-shape), weights random
    (seed 0, drawn in float32, then cast: a float32 reference gets the same weights). Speed and
    token counts are those of the real model; scores are not."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from w2s.proxy.runtime.loading import LoadedModel, pick_device, pick_dtype

    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    cfg = AutoConfig.from_pretrained(shape_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.to(device=dev, dtype=dt).eval()
    tok = AutoTokenizer.from_pretrained(shape_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return LoadedModel("smollm2", model, tok, dev, dt)


def save_shape(source: str, out: str) -> None:
    """Config and tokenizer of `source`, no weights (~4 MB): what --random-weights needs."""
    from w2s.proxy.core.config import ModelConfig
    from w2s.proxy.runtime.loading import load_model

    m = load_model("smollm2", ModelConfig(source=source, dtype="float32", device="cpu"))
    Path(out).mkdir(parents=True, exist_ok=True)
    m.model.config.save_pretrained(out)
    m.tokenizer.save_pretrained(out)
    print(f"saved the config and tokenizer of {source} in {out}")

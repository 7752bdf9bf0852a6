"""LoRA adapters on a shared base model, unmerged: the weights exist once.

Every `models:` entry on one base (same source, dtype and device) runs on one
model object. When some of them name an `adapter:`, that object is a PEFT
`PeftModel` holding every such adapter, and each row of a forward pass names
the adapter it runs with (PEFT's mixed-adapter batches, `adapter_names`): a
trained guide's tuned rows run with its adapter and its untuned rows as
`"__base__"` in the same pass, and so does any other user of the base (the
local upstream, a prompted guide). Merging (`merge_and_unload`) would cost a
second copy of the weights per adapter and a forward pass per copy.
"""
from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from w2s.proxy.core.errors import ModelLoadError

BASE = "__base__"  # PEFT's name for "no adapter" in adapter_names


def is_peft(model: Any) -> bool:
    peft = sys.modules.get("peft")  # never imported unless some adapter was loaded
    return peft is not None and isinstance(model, peft.PeftModel)


def attach(model: Any, adapters: dict[str, str]) -> tuple[Any, dict[str, str]]:
    """Wrap `model` with every adapter ({models: name -> adapter directory}), unmerged.

    -> (the PeftModel, {models: name -> its PEFT adapter name}).
    """
    try:
        from peft import PeftModel
    except ImportError:
        raise ModelLoadError("adapters need peft: pip install 'w2s-proxy[lora]'") from None
    wrapped, names = None, {}
    for name, path in adapters.items():
        where = Path(path).expanduser()
        if not (where / "adapter_config.json").exists():
            raise ModelLoadError(f"models.{name}.adapter: no PEFT adapter in {path} (adapter_config.json missing)")
        # PEFT keeps adapters in ModuleDicts: no dots in the name.
        key = re.sub(r"\W", "_", name)
        while key in names.values() or key == BASE:
            key += "_"
        try:
            if wrapped is None:
                wrapped = PeftModel.from_pretrained(model, str(where), adapter_name=key)
            else:
                wrapped.load_adapter(str(where), adapter_name=key)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise ModelLoadError(f"models.{name}.adapter: cannot load {path}: {str(e).splitlines()[0]}") from None
        names[name] = key
    _check_head(wrapped)
    wrapped.eval()
    return wrapped, names


def _check_head(wrapped: Any) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils.other import AuxiliaryTrainingWrapper

    # The scorer applies the LM head outside the per-row adapter context, in slices
    # of flattened rows (scorers/rows.py): an adapter there could not be per row.
    if isinstance(wrapped.get_output_embeddings(), (BaseTunerLayer, AuxiliaryTrainingWrapper)):
        raise ModelLoadError("adapters that change the LM head (lm_head in target_modules or modules_to_save) "
                             "are not supported; train with target_modules='all-linear', which leaves it out")


@contextmanager
def per_row(model: Any, adapters: list[str | None]) -> Iterator[None]:
    """Inside: each forward of `model`'s modules runs row b with adapters[b] (None = the base weights).

    The scorer calls the decoder alone, so that the (B, N, V) logits never exist,
    which PeftModel.forward would not allow; this is the context PeftModel.forward
    and generate set up around the model for `adapter_names`.
    """
    if not is_peft(model):
        if any(a is not None for a in adapters):
            raise ValueError("rows name an adapter, but the model carries none")
        yield
        return
    with model._enable_peft_forward_hooks(adapter_names=[a or BASE for a in adapters]):
        yield


def generate_kwargs(model: Any, adapter: str | None, rows: int) -> dict[str, Any]:
    """Extra arguments for `model.generate` over `rows` rows that all run with `adapter`."""
    return {"adapter_names": [adapter or BASE] * rows} if is_peft(model) else {}

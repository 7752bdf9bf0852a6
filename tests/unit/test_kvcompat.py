"""The KV cache keyword matches the installed transformers (renamed past_key_values -> cache in 5.24)."""
import dataclasses
import inspect

from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.gemma3.modeling_gemma3 import Gemma3TextModel
from transformers.models.llama.modeling_llama import LlamaModel

from w2s.proxy.runtime.kvcompat import cache_kw, cache_name, out_cache


def test_the_name_is_a_parameter_of_both_families_decoders():
    for decoder in (LlamaModel, Gemma3TextModel):  # SmolLM2 guides, the Gemma upstream
        assert cache_name() in inspect.signature(decoder.forward).parameters


def test_the_cache_goes_in_and_comes_out_under_that_name():
    marker = object()
    assert cache_kw(marker) == {cache_name(): marker}
    fields = {f.name for f in dataclasses.fields(BaseModelOutputWithPast)}
    assert cache_name() in fields
    assert out_cache(BaseModelOutputWithPast(**{cache_name(): marker})) is marker

"""The embedded default takes a conversation: a base-model upstream with `template: "{prompt}"` and
`chat_template: transcript` sends a raw prompt verbatim (/v1/completions, Prompt.raw, every bench) and a
chat whole, as "System:" / "User:" / "Assistant:" lines ending where the model starts another one itself."""
from __future__ import annotations

import asyncio

from tests.support.configs import REPO
from w2s.providers.chat_templates import load_chat_template
from w2s.providers.generate_batcher import merge_key
from w2s.providers.local import LocalSampler
from w2s.proxy.core.chat_template import TRANSCRIPT
from w2s.proxy.core.config_load import load_config, upstream_config
from w2s.proxy.core.rendering import render
from w2s.proxy.core.types import Chunk, Continuation, Prompt, SampleRequest

CHAT = [{"role": "system", "content": "You are a movie buff."}, {"role": "user", "content": "A film for tonight?"},
        {"role": "assistant", "content": "The Princess Bride."}, {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Why?"}]}]
OPENING = "I watched this movie last night and"


def test_a_raw_prompt_stays_verbatim_and_a_chat_goes_whole():
    raw = render(Prompt.raw(OPENING), None, "{prompt}", chat_template=TRANSCRIPT)
    assert raw.text == OPENING and raw.add_special_tokens  # as before: the tokenizer adds Gemma's BOS
    chat = render(Prompt.chat(CHAT), None, "{prompt}", chat_template=TRANSCRIPT)
    assert chat.text == ("System: You are a movie buff.\nUser: A film for tonight?\nAssistant: The Princess Bride.\n"
                         "System: Be brief.\nUser: Why?\nAssistant:")
    assert chat.add_special_tokens and chat.dropped == ()  # the transcript has no BOS of its own


def test_a_trailing_assistant_message_is_continued_inside_the_transcript():
    p = Prompt.chat([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " Hello"}])
    assert render(p, None, "{prompt}", chat_template=TRANSCRIPT).text + p.prefill == "User: Hi\nAssistant: Hello"


def test_the_shipped_default_sends_chats_as_a_transcript():
    cfg = load_config(REPO / "config.yaml")
    up = cfg.upstreams[cfg.routes[cfg.default_route].upstream]
    assert (up.template, up.chat_template) == ("{prompt}", "transcript")
    assert load_chat_template("transcript", "gemma-local") is TRANSCRIPT


def test_raw_prompts_and_chats_never_share_a_generate_call():
    raw = SampleRequest(Prompt.raw(OPENING), [Continuation("", 4)])
    chat = SampleRequest(Prompt.chat(CHAT), [Continuation("", 4)])
    assert merge_key(raw) != merge_key(chat)
    assert merge_key(raw) == merge_key(SampleRequest(Prompt.raw("other"), [Continuation("", 2)]))


class _Batcher:
    """What the local sampler hands its generate calls: recorded, answered with a chunk cut at "\\nUser:"."""

    def __init__(self):
        self.requests: list[SampleRequest] = []

    async def submit(self, request: SampleRequest) -> list[Chunk]:
        self.requests.append(request)
        hit = "\nUser:" in request.stop
        return [Chunk(" Because.", "stop" if hit else "length", 3, 9, stop_sequence="\nUser:" if hit else None)]


def sampler() -> tuple[LocalSampler, _Batcher]:
    cfg = upstream_config({"provider": "local", "model": "m", "template": "{prompt}", "chat_template": "transcript"})
    s = LocalSampler("gemma-local", cfg, pool=None)
    s.batcher = _Batcher()
    return s, s.batcher


def test_a_chat_ends_at_the_next_turn_and_a_raw_prompt_gets_no_extra_stop():
    s, batcher = sampler()
    out = asyncio.run(s.sample(SampleRequest(Prompt.chat(CHAT), [Continuation("", 8)], stop=("!",))))
    assert batcher.requests[-1].stop == ("!", "\nUser:", "\nuser:", "\nSystem:", "\nAssistant:")
    (chunk,) = out.chunks
    # Ended by the model's own turn marker, not by a stop string the client sent: no stop_sequence reported.
    assert chunk.finish_reason == "stop" and chunk.stop_sequence is None and out.notes == ()
    asyncio.run(s.sample(SampleRequest(Prompt.raw(OPENING), [Continuation("", 8)])))
    assert batcher.requests[-1].stop == ()  # the benches' raw prompts draw exactly as before


def test_a_client_stop_string_equal_to_the_marker_is_still_reported():
    s, _ = sampler()
    out = asyncio.run(s.sample(SampleRequest(Prompt.chat(CHAT), [Continuation("", 8)], stop=("\nUser:",))))
    assert out.chunks[0].stop_sequence == "\nUser:"


def test_a_stop_string_split_over_two_chunks_still_ends_the_answer():
    from w2s.providers.local import _first_stop

    marker = ("\nUser:",)
    assert _first_stop("User: and you?", "It is great.\n", marker) == (-1, "\nUser:")  # cut all of this chunk
    assert _first_stop(" great.\nUser: hi", "It is", marker) == (7, "\nUser:")
    assert _first_stop(" more", "Earlier\nUser: text", marker) is None  # only a stop ending in the new text
    assert _first_stop("abc.", "", ("c", ".")) == (2, "c") and _first_stop("x", "", ("x",)) == (0, "x")


def test_a_chunk_ending_inside_a_stop_string_holds_that_part_back():
    from w2s.providers.local import _partial_stop

    marker = ("\nUser:",)
    assert _partial_stop(" It is great.\nUser", "", marker) == 5  # the next round writes "\nUser:" whole
    assert _partial_stop("User", "It is great.\n", marker) == 4  # only what is in this chunk
    assert _partial_stop(" It is great.\n", "", marker) == 0  # a newline alone is text, kept
    assert _partial_stop(" It is great.", "", marker) == _partial_stop("abc", "", ()) == 0

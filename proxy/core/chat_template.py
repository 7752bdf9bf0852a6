"""A model's own chat template (Jinja, as Hugging Face tokenizers carry it), rendered without the model.

A completions upstream gets raw text, so a chat must be rendered the way the
*upstream* model was trained to read it, every turn. The template comes from
the model's tokenizer directory, its GGUF file or the config
(providers/chat_templates.py loads it); rendering it needs only Jinja, in the
same sandbox transformers uses.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

from w2s.proxy.core.errors import ConfigError, InvalidRequest


@dataclass(frozen=True)
class ChatTemplate:
    source: str  # the Jinja text
    bos_token: str = ""
    eos_token: str = ""
    origin: str = "config"  # where it came from, for messages
    # Turn markers: an answer ends where the model starts the next turn itself (chats rendered with it only).
    stop: tuple[str, ...] = ()
    own_bos: bool = True  # the template writes the BOS itself (Hugging Face's do); False: the tokenizer adds it

    @cached_property
    def _compiled(self):
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str):
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = time.strftime  # some templates print today's date
        try:
            return env.from_string(self.source)
        except TemplateError as e:
            raise ConfigError(f"chat template from {self.origin} does not compile: {e}") from None

    def render(self, messages: list[dict]) -> str:
        """The conversation, then the start of the assistant's turn (add_generation_prompt)."""
        from jinja2 import TemplateError

        try:
            return self._compiled.render(messages=messages, add_generation_prompt=True,
                                         bos_token=self.bos_token, eos_token=self.eos_token)
        except TemplateError as e:
            raise InvalidRequest(f"the upstream's chat template ({self.origin}) refused this conversation: {e}",
                                 param="messages") from None


# A plain transcript a base model continues naturally: "System:", "User:" and "Assistant:" lines, then
# "Assistant:" for the answer, which ends where the model starts a next line of the transcript itself.
TRANSCRIPT = ChatTemplate(
    "{% for m in messages %}"
    "{% if m.role == 'system' %}System: {{ m.content }}\n"
    "{% elif m.role == 'assistant' %}Assistant: {{ m.content }}\n"
    "{% else %}User: {{ m.content }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}",
    origin="the built-in transcript template", stop=("\nUser:", "\nuser:", "\nSystem:", "\nAssistant:"),
    own_bos=False)
BUILTIN = {"transcript": TRANSCRIPT}  # chat_template: transcript

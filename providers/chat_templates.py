"""Where an upstream's chat template comes from: `upstreams.<name>.chat_template`.

    chat_template: /models/Qwen2.5-7B-Instruct        # a tokenizer directory (tokenizer_config.json,
                                                     #   or chat_template.jinja beside it)
    chat_template: /models/qwen2.5-7b-instruct.gguf   # a GGUF file (its tokenizer.chat_template)
    chat_template: "{% for m in messages %}..."      # the Jinja text itself
    chat_template: transcript                        # built in: "System:" / "User:" / "Assistant:" lines, for base models

Read once at start-up; rendering is proxy/core/chat_template.py.
"""
from __future__ import annotations

import json
from pathlib import Path

from w2s.proxy.core.chat_template import BUILTIN, ChatTemplate
from w2s.proxy.core.errors import ConfigError


def load_chat_template(spec: str, upstream: str) -> ChatTemplate:
    where = f"upstreams.{upstream}.chat_template"
    if spec in BUILTIN:
        return BUILTIN[spec]
    if "{%" in spec or "{{" in spec:
        return ChatTemplate(spec, origin=where)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ConfigError(f"{where}: {path} not found (a tokenizer directory, a GGUF file or a Jinja template)")
    if path.suffix == ".gguf":
        return _from_gguf(path, where)
    if path.is_dir():
        return _from_directory(path, where)
    raise ConfigError(f"{where}: {path} is neither a tokenizer directory nor a GGUF file")


def _from_directory(path: Path, where: str) -> ChatTemplate:
    cfg_file = path / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    source = cfg.get("chat_template")
    if isinstance(source, list):  # several named templates: the default one
        source = next((t.get("template") for t in source if t.get("name") == "default"), None)
    jinja = path / "chat_template.jinja"  # newer tokenizers keep it beside the config
    if source is None and jinja.is_file():
        source = jinja.read_text()
    if not source:
        raise ConfigError(f"{where}: {path} has no chat template (tokenizer_config.json or chat_template.jinja)")
    return ChatTemplate(source, _token(cfg.get("bos_token")), _token(cfg.get("eos_token")), origin=str(path))


def _token(value) -> str:
    if isinstance(value, dict):  # {"content": "<s>", ...} in older tokenizer configs
        return str(value.get("content") or "")
    return str(value or "")


def _from_gguf(path: Path, where: str) -> ChatTemplate:
    import gguf

    reader = gguf.GGUFReader(str(path))
    field = reader.fields.get("tokenizer.chat_template")
    if field is None:
        raise ConfigError(f"{where}: {path} carries no tokenizer.chat_template")
    tokens = reader.fields.get("tokenizer.ggml.tokens")

    def token(key: str) -> str:
        f = reader.fields.get(key)
        return str(tokens.contents(int(f.contents()))) if f is not None and tokens is not None else ""

    return ChatTemplate(str(field.contents()), token("tokenizer.ggml.bos_token_id"),
                        token("tokenizer.ggml.eos_token_id"), origin=str(path))

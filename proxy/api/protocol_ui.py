"""The page's playground request (`POST /ui/api/search`): one prompt, a route, W/K/L.

It resolves into a `Job` exactly like the APIs' requests (proxy/api/job.py), so
the page runs the very search an API client would: the same route settings,
the same override checks, the same 400s.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from w2s.proxy.api import w2s_options
from w2s.proxy.core.types import Prompt


class PlaygroundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None  # the route; None = the default route
    prompt: str = Field(min_length=1)
    chat: bool = False  # send the prompt as one user message instead of a raw completion prompt
    w2s: dict[str, Any] | None = None  # search overrides, as in the APIs: {"w": 2, "k": 2, "l": 10, ...}

    def check_supported(self) -> None:
        """Every field is supported; unknown ones are refused by the model itself."""

    def to_prompt(self) -> Prompt:
        return Prompt.chat([{"role": "user", "content": self.prompt}]) if self.chat else Prompt.raw(self.prompt)

    def search_overrides(self) -> dict[str, Any]:
        return w2s_options.overrides(self.w2s)

"""Whole answers in a search: when it draws them, and which of them may be returned.

An upstream that cannot continue a partial answer exactly (found up front, or mid-search) gets whole
answers only: guided Best-of-N, labelled as such (the planned mode falls back to bon-approx). A request
with tools or an output format draws whole answers too (a tool call or JSON cannot be cut), and a
candidate that does not parse, validate or call an offered tool is never kept.
A part of the search (proxy/core/search.py `_Search`), as a mixin over its state.
"""
from __future__ import annotations

from w2s.proxy.core.errors import NoValidAnswer
from w2s.proxy.core.interfaces import Sampler
from w2s.proxy.core.modes import SearchMode, decide_mode
from w2s.proxy.core.search_beams import Beam
from w2s.proxy.core.tools import check_calls, check_output, whole_reason
from w2s.proxy.core.types import Prompt, SearchParams, SearchResult


class WholeAnswerSteps:
    prompt: Prompt
    sampler: Sampler
    params: SearchParams
    result: SearchResult
    exact: bool  # the upstream continues partial answers exactly: chunks, not whole answers
    whole: bool  # the request asks for whole answers (tools, an output format)

    def start_whole_answers(self, mode: SearchMode) -> None:
        """Whether this search draws chunks or whole answers, from the upstream and the request."""
        # An upstream that cannot continue a prefix exactly only gets one round of
        # whole answers: guided Best-of-N, labelled as such.
        self.exact = True
        if not self.sampler.exact_continuation:
            self.no_continuation(f"upstream {getattr(self.sampler, 'name', '')!r} cannot continue a partial "
                                 "answer: whole answers only")
        # A tool call or JSON answer cannot be cut: one round of whole answers (prompt.whole_answers).
        self.whole = self.prompt.whole_answers
        if self.whole:
            self.result.note(whole_reason(self.prompt.tools, self.prompt.output, mode))

    def no_continuation(self, reason: str) -> None:
        """From here on, whole answers only: the planned mode falls back (CBS and BoN to bon-approx)."""
        self.exact = False
        after = decide_mode(self.params, exact=False, passthrough=self.result.mode is SearchMode.PASSTHROUGH)
        if self.result.mode is not SearchMode.SAMPLE:
            self.result.fall_back(after, reason)

    def check_format(self, candidates: list[Beam]) -> None:
        """A candidate that cannot be returned: under an output format, text that does not parse (or
        validate); a call to a function not offered, or whose arguments do not validate against its
        parameters. A candidate that calls tools answers with its calls: its text is not checked."""
        fmt, tools = self.prompt.output, self.prompt.tools
        for b in candidates:
            if b.rejected is not None:
                continue
            if tools is not None and (b.tool_calls or tools.choice in ("required", "function")):
                b.rejected = check_calls(b.tool_calls, tools)
            elif fmt is not None and not b.tool_calls:
                b.rejected = check_output(b.text, fmt)

    def no_valid_answer(self, candidates: list[Beam]) -> None:
        """No candidate passed its checks: a 502 with what each was, never an invalid answer."""
        why = "; ".join(f"candidate {b.index}: {b.rejected}" for b in candidates[:8])
        raise NoValidAnswer(f"no candidate of {len(candidates)} was valid under the request's output format or tools "
                            f"({why})", notes=self.result.notes)

"""`w2s batch` without models: the input forms and bad lines, and an output file's partial last line."""
from __future__ import annotations

import pytest

from tests.support.batch_files import line, mixed_lines, options, write_lines
from w2s.proxy.api.openai_bodies import CHAT_URL, TEXT_URL
from w2s.proxy.batch.input import read_input
from w2s.proxy.batch.output import OutputFile
from w2s.proxy.batch.run import run_batch
from w2s.proxy.core.errors import W2SError


def test_input_forms_and_bad_lines_are_classified(tmp_path):
    lines, _, bad = mixed_lines()
    got = read_input(write_lines(tmp_path / "in.jsonl", lines + [""]))  # a trailing blank line is fine
    assert [(i.custom_id, i.url, i.line) for i in got.items] == [
        ("p1", TEXT_URL, 1), ("m1", CHAT_URL, 2), ("c1", CHAT_URL, 4), ("t1", TEXT_URL, 5), ("nr", TEXT_URL, 8)]
    assert got.items[0].body == {"prompt": "Review of the film Jaws:", "max_tokens": 3}  # the id is not a body field
    reasons = {b.line: b.reason for b in got.bad}
    assert set(reasons) == bad
    assert "not valid JSON" in reasons[3] and "unknown url" in reasons[6]
    assert "missing 'id'" in reasons[7] and "non-empty string" in reasons[9]


async def test_partial_last_line_is_cut_and_other_lines_are_refused(config, tmp_path):
    out = tmp_path / "out.jsonl"
    full = {"id": "batch_req_1", "custom_id": "a", "response": None, "error": {"code": "x", "message": "y"}}
    out.write_text(line(full) + "\n" + line(full)[:25])
    f = OutputFile(out)
    state = f.open()
    f.close()
    assert state.truncated_bytes == 25 and state.ok == {"a": False}
    assert out.read_text() == line(full) + "\n"

    out.write_text("not a record\n" + line(full) + "\n")
    inp = write_lines(tmp_path / "in.jsonl", [line({"id": "a", "prompt": "x"})])
    with pytest.raises(W2SError, match="line\\(s\\) 1 are not batch output records"):
        await run_batch(config, options(inp, out))
    assert out.read_text().startswith("not a record\n")  # someone else's line is never thrown away

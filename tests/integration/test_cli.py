"""`w2s generate` end to end, and its one-line errors."""
from __future__ import annotations

import json

from tests.support.cli import w2s, write_config
from tests.support.configs import make_config_dict


def test_generate_with_trace(tmp_path):
    cfg = write_config(tmp_path, make_config_dict())
    trace_file = tmp_path / "trace.json"
    r = w2s("--config", cfg, "--threads", "1", "generate", "The movie was", "--model", "w2s-test",
            "-w", "2", "-k", "2", "-l", "4", "--max-tokens", "8", "--seed", "1", "--trace",
            "--trace-json", str(trace_file))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), "an answer is printed"
    assert "round" in r.stderr and "kept" in r.stderr and "*" in r.stderr  # the trace table
    assert "cbs, 2 rounds" in r.stderr
    trace = json.loads(trace_file.read_text())  # the page's schema (proxy/api/trace.py)
    assert trace["version"] == 2 and trace["route"] == "w2s-test" and len(trace["rounds"]) == 2
    assert trace["prompt"] == {"text": "The movie was", "chars": 13, "truncated": False}
    best = trace["answers"][0]
    assert best["text"].strip() == r.stdout.splitlines()[0].strip() and len(best["path"]) == 2
    assert "".join(trace["rounds"][i]["candidates"][c]["chunk"] for i, c in enumerate(best["path"])) == best["text"]


def test_trace_json_into_a_missing_directory_fails_before_any_work(tmp_path):
    cfg = write_config(tmp_path, make_config_dict())
    _one_line_error(w2s("--config", cfg, "generate", "x", "--trace-json", str(tmp_path / "no" / "t.json")),
                    "--trace-json")


def test_generate_json_and_messages_file(tmp_path):
    cfg = write_config(tmp_path, make_config_dict())
    msgs = tmp_path / "m.json"
    msgs.write_text(json.dumps([{"role": "user", "content": "Review the film in one line."}]))
    r = w2s("--config", cfg, "generate", "--messages", str(msgs), "--model", "w2s-test",
            "-l", "none", "-k", "3", "-w", "1", "--max-tokens", "6", "--seed", "2", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["mode"] == "bon" and len(out["rounds"]) == 1 and len(out["rounds"][0]["candidates"]) == 3


def _one_line_error(r, *needles):
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("w2s: error:"), r.stderr
    for n in needles:
        assert n in lines[0]


def test_bad_config_key_is_one_line(tmp_path):
    data = make_config_dict()
    data["routes"]["w2s-test"]["search"]["ww"] = 3
    _one_line_error(w2s("--config", write_config(tmp_path, data), "generate", "x"), "routes.w2s-test.search.ww")


def test_unknown_route_is_one_line(tmp_path):
    _one_line_error(w2s("--config", write_config(tmp_path, make_config_dict()), "generate", "x", "--model", "nope"),
                    "nope")


def test_missing_model_file_is_one_line(tmp_path):
    data = make_config_dict()
    data["models"]["smollm2"]["source"] = str(tmp_path / "missing.gguf")
    _one_line_error(w2s("--config", write_config(tmp_path, data), "generate", "x", "--model", "w2s-test"),
                    "missing.gguf")


def test_missing_config_file_is_one_line(tmp_path):
    _one_line_error(w2s("--config", str(tmp_path / "nope.yaml"), "generate", "x"), "nope.yaml")


def test_bad_thread_count_and_batch_rows_are_one_line(tmp_path):
    cfg = write_config(tmp_path, make_config_dict())
    _one_line_error(w2s("--config", cfg, "--threads", "0", "generate", "x"), "--threads")
    data = make_config_dict()
    data["upstreams"]["gemma-local"]["max_batch_rows"] = 0
    _one_line_error(w2s("--config", write_config(tmp_path, data), "generate", "x"),
                    "upstreams.gemma-local.max_batch_rows")

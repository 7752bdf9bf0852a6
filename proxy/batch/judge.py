"""The user's judge for `w2s make-prefs`: a Python function, answer text -> float.

    --judge mypkg.judges:positivity     a module on the path (the current directory included)
    --judge ./judge.py:positivity       a file

A preference written as code: higher is better. It sees the answer's text only
(what the guide will later score), is called once per answer, and must return
a finite number.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from pathlib import Path
from typing import Callable

from w2s.proxy.core.errors import W2SError

Judge = Callable[[str], float]


class JudgeError(W2SError):
    """The judge failed on one answer (the prompt fails; the run goes on)."""


def load_judge(spec: str) -> Judge:
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise W2SError(f"--judge {spec!r}: expected MODULE:FUNCTION or path/to/file.py:FUNCTION")
    try:
        module = _import(where)
    except W2SError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the user's module raises on import
        raise W2SError(f"--judge {spec!r}: importing {where} failed: {type(e).__name__}: {e}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise W2SError(f"--judge {spec!r}: {where} has no function {name!r}")
    return fn


def _import(where: str):
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise W2SError(f"--judge: file not found: {where}")
        spec = importlib.util.spec_from_file_location(f"w2s_judge_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # the `w2s` script does not put the current directory there
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        if e.name and where.startswith(e.name):
            raise W2SError(f"--judge: no module named {where!r} (run from its directory, or give a .py path)") from None
        raise


def judge_all(judge: Judge, texts: list[str]) -> list[float]:
    scores = []
    for t in texts:
        try:
            v = judge(t)
        except Exception as e:  # noqa: BLE001 - the user's code: its failure is this prompt's error
            raise JudgeError(f"the judge raised {type(e).__name__}: {e}") from None
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise JudgeError(f"the judge returned {v!r}, not a number") from None
        if not math.isfinite(f):
            raise JudgeError(f"the judge returned {f}, not a finite number")
        scores.append(f)
    return scores

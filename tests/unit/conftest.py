"""Unit tier: no model weights, no subprocess, no external server.

Servers over scripted parts on loopback, in process, count as unit. The guard below
fails any unit test that loads real weights or starts a process.
"""
import subprocess

import pytest

from w2s.proxy.runtime.pool import ModelPool

MOVE_IT = "move it to tests/integration/ or tests/system/"


@pytest.fixture(autouse=True)
def _no_weights_no_processes(monkeypatch):
    load = ModelPool.get

    def get(self, name):
        load(self, name)  # a source that is not there fails here, as it should
        raise AssertionError(f"a unit test loaded the weights of {name!r}: {MOVE_IT}")

    def popen(self, args, *rest, **kw):
        raise AssertionError(f"a unit test may not start a process ({args!r}): {MOVE_IT}")

    monkeypatch.setattr(ModelPool, "get", get)
    monkeypatch.setattr(subprocess.Popen, "__init__", popen)

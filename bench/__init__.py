"""w2s-proxy's benchmarks: scripts run from the repository root as `python -m bench.<script>`.

Shared code lives in bench.lib; no script imports another script. bench/ is not in the wheel.
"""

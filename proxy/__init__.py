"""w2s-proxy: weak-to-strong search behind OpenAI- and Anthropic-compatible APIs.

Layers, lowest first (tests/test_layers.py):
core < runtime < providers | scorers < engine < api < server | batch < cli
"""

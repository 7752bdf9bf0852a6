"""What the bench scripts share: statistics, tables, results paths, child processes, data, model helpers.

Importing it sets the offline defaults every bench runs with (HF_HUB_OFFLINE=1, no tokenizer threads).
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

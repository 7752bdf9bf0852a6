"""Batch alignment of JSONL files: input, output, the runs (resumable), the runners
(in process or against a proxy) and the report."""

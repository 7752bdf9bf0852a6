"""The model runtime: every configured model loaded once, and the one thread that runs
them. Shared by providers/ (the local upstream) and scorers/ (the guide pair)."""

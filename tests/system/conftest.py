"""System tier: whole processes and outside programs. Ray clusters, HAProxy in front of
replicas, headless Chromium, a wheel built and installed into a fresh venv, guide
training, concurrent model-cache processes. Each test starts what it needs; those on
the session's models use `engine` and `auth_live` (tests/support/models.py)."""

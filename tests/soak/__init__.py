"""The chaos soak: ``python -m tests.soak.soak --minutes 30`` (see tests/soak/soak.py)."""

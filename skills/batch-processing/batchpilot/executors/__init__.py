"""Executors: the registry and pipeline that `run` and `retry` drive, and the four modes (batch, direct, agents, headless)."""

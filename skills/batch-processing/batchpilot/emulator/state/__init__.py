"""The emulator's state: the batch store, prompt cache, clock, rate-limit buckets, persistence, request log."""

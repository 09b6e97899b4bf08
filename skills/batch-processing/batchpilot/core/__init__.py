"""Core: errors, crash-safe files and JSONL, model facts and prices, token estimates, progress, crash points."""

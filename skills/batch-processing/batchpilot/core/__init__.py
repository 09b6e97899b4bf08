"""Core, the floor every stage stands on: errors, crash-safe files and JSONL, model facts and prices, token
estimates, progress, crash points, the clock, the skill's paths, the execution modes and suggested commands."""

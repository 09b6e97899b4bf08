"""The emulator's configuration: one dataclass, buildable from Python or from `batchpilot emulate` flags.

Every knob has a default that lets ordinary tests run untouched: limits generous, no faults, batches that
finish in milliseconds on a real-time clock. Tests lower what they exercise (a 1 KB body limit to see a 413,
a slow batch speed plus the admin clock to watch a cancel, a fault rule to see 529s).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchpilot.emulator.behaviour.faults import FaultRule
from batchpilot.emulator.behaviour.scenario import Step, load_steps

MAX_BATCH_BODY_BYTES = 256 * 1024 * 1024  # the real limit; 413 above it
MAX_MESSAGES_BODY_BYTES = 32 * 1024 * 1024
DAY = 86_400.0


@dataclass
class EmulatorConfig:
    """Everything `batchpilot emulate` can be told. Times are in emulated seconds unless they say `wall`."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: the OS picks a free port
    seed: int = 0  # same seed + same request -> same answer
    # Batch clock and processing.
    time_scale: float = 1.0  # emulated seconds per wall second (86400: a day passes in a second)
    batch_speed: float = 1000.0  # requests each batch completes per emulated second
    batch_window: float = DAY  # expires_at = created_at + this
    archive_after: float = 29 * DAY  # results stop being downloadable this long after created_at
    cancel_delay: float = 1.0  # canceling -> ended after this long (in-flight requests draining)
    # Cache hits in a batch are best-effort: the docs report 30-98% in practice
    # (https://platform.claude.com/docs/en/build-with-claude/batch-processing). A request that would read
    # the cache misses with probability 1 - this (seeded per request), and writes the prefix again.
    batch_cache_hit_rate: float = 0.6
    shuffle_results: bool = True  # batch results come in any order (seeded), as the API documents
    progressive_counts: bool = False  # False: request_counts move only when the batch ends (documented API)
    not_found_after_create: float = 0.0  # wall seconds during which a new batch answers 404 on retrieve
    # Emulated seconds after a batch ends during which its results answer 404 not_found_error, as the real
    # API was seen to do right after `ended` (anthropic-sdk-python issue 1432): a propagation glitch.
    results_not_found_after_end: float = 0.0
    # Body limits.
    max_batch_body_bytes: int = MAX_BATCH_BODY_BYTES
    max_messages_body_bytes: int = MAX_MESSAGES_BODY_BYTES
    # Rate limits on /v1/messages (per minute, token buckets refilling continuously in wall time).
    requests_per_minute: int = 1_000_000
    input_tokens_per_minute: int = 1_000_000_000
    output_tokens_per_minute: int = 1_000_000_000
    # Batch endpoints: their own request limit, and the processing-queue limit checked at create.
    batch_requests_per_minute: int = 1_000_000
    batch_queue_limit: int = 500_000
    # Models and responses.
    allow_unknown_models: bool = False  # True: any model id is answered (as a 128K-output model)
    latency: float = 0.0  # wall seconds added to every /v1/messages answer
    slow_seconds: float = 2.0  # wall seconds a `slow` fault adds
    faults: list[FaultRule] = field(default_factory=list)
    scenario: list[Step] = field(default_factory=list)
    log_path: str | None = None  # one JSON line per request
    data_dir: str | None = None  # where batch requests are spooled; a private temp dir when None
    persist: bool = False  # keep batches and the clock in data_dir across restarts (persist.py)

    @classmethod
    def from_options(cls, **options: Any) -> "EmulatorConfig":
        """Build from CLI-style values: fault specs as strings, the scenario as a file path."""
        faults = [FaultRule.parse(spec) for spec in options.pop("fault", None) or ()]
        faults_file = options.pop("faults_file", None)
        if faults_file:
            faults += [FaultRule.from_dict(d) for d in _read_json(faults_file, "faults file")]
        scenario_file = options.pop("scenario_file", None)
        steps = load_steps(_read_json(scenario_file, "scenario file")) if scenario_file else []
        known = {k: v for k, v in options.items() if k in cls.__dataclass_fields__ and v is not None}
        return cls(faults=faults, scenario=steps, **known)


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what} {path!r}: {exc}") from None


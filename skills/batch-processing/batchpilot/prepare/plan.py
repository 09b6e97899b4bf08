"""Plan: what a job will cost and how long it will take in each mode, and which mode to use.

`plan_job` is the `plan` command: it streams a job's requests once, tallies their tokens and builds the
receipt, writing nothing. The rest is pure: it takes the requests a run would contain and returns numbers.
Token counts come from the local estimator (`batchpilot.core.tokens`), scaled by the API's count_tokens
endpoint on a sample when asked. Costs per mode:

* direct — standard price, every input token billed in full;
* direct_cached — standard price, the shared prefix written once to the 5-minute cache (1.25x) and read by
  every other request: what `prepare --mode direct` sends when the prefix is cacheable;
* batch — 50% of standard;
* batch_cached — 50%, with the shared prefix in the cache batch mode chooses for the job's size
  (`estimates.batch_cache_choice`: 1 hour (2x writes) for a large batch, 5 minutes (1.25x) for a small one,
  none when caching would cost more): what batch mode sends. Cache hits in a batch are best-effort, reported at 30-98% (https://platform.claude.com/docs/en/build-with-claude/
  batch-processing); the expected cost assumes BATCH_HIT_RATE, the middle of that, and a miss writes the
  prefix again;
* agents / headless — billed to the user's Claude Code plan, so tokens only and no dollar figure.

A model with a long-prompt tier bills a request whose prompt exceeds its threshold at the tier's prices,
every token of it (Haiku 5.5: 5x above 100,000 tokens, https://platform.claude.com/docs/en/models/haiku-5-5/
overview): the tally keeps those requests' tokens apart and each mode adds the difference.

Every cost is a range as well as an expected value (`cost_range_usd`): the input estimate within
`tokens.ESTIMATE_ERROR`, the output between the spread of its source (`output_estimate`), and batch cache
hits between 30% and 98%. The output estimate comes, in order of preference, from the template's example
output (`examples/output.json`, counted), its `output_tokens_estimate`, or a share of max_tokens; each
with the spread a real answer's length shows between items. `run --pilot N` measures it instead.

`cache` gives each cache choice's break-even hit rate: (write - 1) / (write - read), 22% for the 5-minute
cache and 53% for the 1-hour one at the usual multipliers, below which caching costs more than it saves.

The recommendation encodes the skill's decision guidance: dependent items → sequential; items that need tools
or file access, or a handful of items → agents (headless past a few hundred); time-critical → direct; large and
not urgent → batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.modes import EXECUTOR_COMMANDS, api_key_present, claude_on_path
from batchpilot.core.models import BATCH_DISCOUNT, PRICES_AS_OF, Prices
from batchpilot.core.paths import default_run_dir
from batchpilot.core.progress import Progress
from batchpilot.core.shell import absolute_source, next_command
from batchpilot.core.tokens import ESTIMATE_ERROR, estimate_input_tokens, request_segments
from batchpilot.prepare.estimates import (BATCH_HIT_RANGE, BATCH_HIT_RATE, OUTPUT_SPREAD, OutputEstimate,
                                          batch_cache_choice, batch_hit_rates, cache_advice, output_estimate,
                                          prefix_cost)
from batchpilot.prepare.items import describe_skipped
from batchpilot.prepare.job import open_job

HANDFUL = 10
AGENTS_MAX = 100
WAVE_SIZE = 10
SECONDS_PER_WAVE = 90
HEADLESS_PARALLEL = 4
SECONDS_PER_HEADLESS_ITEM = 45
BATCH_TYPICAL_SECONDS = 3600
BATCH_MAX_SECONDS = 24 * 3600
# Direct-mode time assumes these account limits (a modest tier); actual limits are read from the API later.
ASSUMED_RPM = 1000
ASSUMED_ITPM = 450_000
ASSUMED_OTPM = 90_000
ASSUMED_LATENCY = 20.0
DIRECT_CONCURRENCY = 16
CHANGES_LISTED = 200  # changed files the plan receipt lists by name (git: sources)
COUNT_TOKENS_SAMPLE = 50  # requests `plan --count-tokens` sends to the count_tokens endpoint
# The command that executes a prepared run, per mode that has an executor (sequential has none).


def cached_prefix_tokens(params: dict) -> int:
    """Tokens up to and including the last block that carries cache_control (0 when none)."""
    total, upto = 0, 0
    for seg in request_segments(params):
        total += seg.tokens
        if seg.cache_ttl:
            upto = total
    return upto


MEDIA_LISTED = 20  # attachments the plan receipt lists one by one


@dataclass
class Tally:
    """Running token totals over a job's requests; attachments' tokens (pages, pixels) kept apart."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    prefix_tokens: int = 0  # cacheable shared prefix of one request
    max_output_tokens: int = 0
    media: dict = field(default_factory=lambda: {k: {"items": 0, "tokens": 0} for k in ("document", "image")})
    listed: list = field(default_factory=list)
    spread: tuple[float, float] = (1.0, 1.0)  # the output estimate's
    input_error: float = ESTIMATE_ERROR
    # The model's long-prompt tier (`core.models.Tier`): a request whose prompt exceeds its threshold is billed
    # at the tier's prices, every token of it, so such requests' tokens are tallied apart as well.
    long_threshold: int | None = None
    long_input: int = 0
    long_output: int = 0

    def add(self, params: dict, output_estimate: int, input_tokens: int | None = None, item: Any = None) -> None:
        self.requests += 1
        request_in = input_tokens if input_tokens is not None else estimate_input_tokens(params)
        attached = getattr(item, "media", None)
        if attached is not None:
            tokens = attached.tokens
            request_in += tokens
            entry = self.media[attached.kind]
            entry["items"] += 1
            entry["tokens"] += tokens
            if attached.kind == "document":
                entry["pages"] = entry.get("pages", 0) + (attached.pages or 0)
            else:
                entry["pixels"] = entry.get("pixels", 0) + (attached.width or 0) * (attached.height or 0)
            if len(self.listed) < MEDIA_LISTED:
                figures = ({"pages": attached.pages} if attached.kind == "document"
                           else {"width": attached.width, "height": attached.height})
                self.listed.append({"custom_id": item.custom_id, "type": attached.kind,
                                    "media_type": attached.media_type, **figures, "tokens": tokens})
        self.input_tokens += request_in
        request_out = min(output_estimate, int(params.get("max_tokens", output_estimate)))
        self.output_tokens += request_out
        if self.long_threshold is not None and request_in > self.long_threshold:
            self.long_input += request_in
            self.long_output += request_out
        self.max_output_tokens += int(params.get("max_tokens", 0))
        self.prefix_tokens = max(self.prefix_tokens, cached_prefix_tokens(params))

    def scaled(self, input_scale: float, output_scale: float) -> "Tally":
        """The same job with its input and output totals scaled (a range's end)."""
        return dataclasses.replace(self, input_tokens=round(self.input_tokens * input_scale),
                                   output_tokens=min(round(self.output_tokens * output_scale), self.max_output_tokens),
                                   prefix_tokens=round(self.prefix_tokens * input_scale),
                                   long_input=round(self.long_input * input_scale),
                                   long_output=round(self.long_output * output_scale))


@dataclass
class Mode:
    name: str
    cost_usd: float | None
    seconds: float
    note: str
    extra: dict = field(default_factory=dict)
    cost_range: tuple[float, float] | None = None

    def as_dict(self) -> dict:
        cost = None if self.cost_usd is None else round(self.cost_usd, 4)
        span = None if self.cost_range is None else [round(self.cost_range[0], 4), round(self.cost_range[1], 4)]
        return {"cost_usd": cost, "cost_range_usd": span, "expected_seconds": round(self.seconds), "note": self.note,
                **self.extra}


def _costs(t: Tally, prices: Prices, batch_ttl: str | None, hit_rate: float) -> dict[str, float]:
    """The dollar cost of each priced mode for the tally; a batch's shared prefix under `batch_ttl` (None: not
    cached), its in-batch hits at `hit_rate` for a 1-hour entry (`estimates.batch_hit_rates`)."""
    per = 1_000_000

    def with_cache(write: float, hit: float) -> float:
        """Standard-price cost with the prefix written once, then read on a hit and written again on a miss."""
        prefix_cost_ = t.prefix_tokens * prices.input * prefix_cost(t.requests, write, prices.read_multiplier, hit)
        rest = (t.input_tokens - t.prefix_tokens * t.requests) * prices.input
        return (prefix_cost_ + rest + t.output_tokens * prices.output) / per + long_extra

    # Requests above the long-prompt tier's threshold pay the tier's prices: the difference, on their tokens
    # (their shared prefix priced as plain input: it is a sliver of a prompt that long).
    tier = prices.long_prompt
    long_extra = ((tier.input - prices.input) * t.long_input + (tier.output - prices.output) * t.long_output) / per \
        if tier is not None else 0.0
    direct = (t.input_tokens * prices.input + t.output_tokens * prices.output) / per + long_extra
    out = {"direct": direct, "batch": direct * BATCH_DISCOUNT, "direct_cached": direct, "batch_cached": direct * BATCH_DISCOUNT}
    if t.prefix_tokens and t.requests:
        # The TTL follows the mode (build.choose_cache), and so does the write price.
        out["direct_cached"] = with_cache(prices.write_5m, 1.0)
        if batch_ttl:
            write = prices.write_1h if batch_ttl == "1h" else prices.write_5m
            out["batch_cached"] = with_cache(write, batch_hit_rates(t.requests, hit_rate)[batch_ttl]) * BATCH_DISCOUNT
    return out


def batch_ttl_for(t: Tally, prices: Prices | None) -> str | None:
    """The TTL batch mode's `auto` picks for this job (`estimates.batch_cache_choice`), None for no cache."""
    if prices is None or not t.prefix_tokens:
        return None
    choice, _, _ = batch_cache_choice(t.requests, prices.write_5m, prices.write_1h, prices.read_multiplier)
    return None if choice == "none" else choice


def mode_costs(t: Tally, prices: Prices | None, batch_ttl: str | None = "auto") -> dict[str, Mode]:
    """Cost (expected and range) and duration per mode for the tallied job. `batch_ttl`: the cache the batch
    requests carry ("5m", "1h", None for none), or "auto" for what batch mode would choose for the job."""
    direct = direct_cached = batch = cached = None
    ranges: dict[str, tuple[float, float]] = {}
    if batch_ttl == "auto":
        batch_ttl = batch_ttl_for(t, prices)
    if prices is not None:
        expected = _costs(t, prices, batch_ttl, BATCH_HIT_RATE)
        low = _costs(t.scaled(1 - t.input_error, t.spread[0]), prices, batch_ttl, BATCH_HIT_RANGE[1])
        high = _costs(t.scaled(1 + t.input_error, t.spread[1]), prices, batch_ttl, BATCH_HIT_RANGE[0])
        ranges = {name: (low[name], high[name]) for name in expected}
        direct, batch, direct_cached, cached = (expected[k] for k in ("direct", "batch", "direct_cached", "batch_cached"))
    direct_seconds = max(
        t.requests / ASSUMED_RPM * 60,
        t.input_tokens / ASSUMED_ITPM * 60,
        t.output_tokens / ASSUMED_OTPM * 60,
        math.ceil(t.requests / DIRECT_CONCURRENCY) * ASSUMED_LATENCY,
    )
    plan_note = "billed to your Claude Code plan (subscription usage), no per-token charge"
    return {
        "direct": Mode("direct", direct, direct_seconds,
                       f"standard price; time assumes {ASSUMED_RPM} requests/min and {ASSUMED_ITPM:,} input tokens/min",
                       cost_range=ranges.get("direct")),
        "direct_cached": Mode("direct_cached", direct_cached, direct_seconds,
                              "standard price, shared instructions written once to the 5-minute cache and read by every other "
                              "request (what direct mode sends)" if t.prefix_tokens
                              else "the shared instructions are below the model's minimum cacheable length",
                              cost_range=ranges.get("direct_cached")),
        "batch": Mode("batch", batch, BATCH_TYPICAL_SECONDS, "50% price; most batches end within 1 hour, at most 24 hours",
                      {"max_seconds": BATCH_MAX_SECONDS}, ranges.get("batch")),
        "batch_cached": Mode("batch_cached", cached, BATCH_TYPICAL_SECONDS, _batch_cached_note(t, batch_ttl),
                             {"max_seconds": BATCH_MAX_SECONDS, "cache": batch_ttl or "none"}, ranges.get("batch_cached")),
        "agents": Mode("agents", None, math.ceil(t.requests / WAVE_SIZE) * SECONDS_PER_WAVE,
                       f"Claude Code subagents in waves of {WAVE_SIZE}; {plan_note}"),
        "headless": Mode("headless", None, math.ceil(t.requests / HEADLESS_PARALLEL) * SECONDS_PER_HEADLESS_ITEM,
                         f"`claude -p` subprocesses, {HEADLESS_PARALLEL} at a time; {plan_note}"),
    }


def _batch_cached_note(t: Tally, batch_ttl: str | None) -> str:
    if not t.prefix_tokens:
        return "the shared instructions are below the model's minimum cacheable length"
    if not batch_ttl:
        return "50% price; for this job's size caching the shared instructions costs more than it saves, so none"
    hits = batch_hit_rates(t.requests, BATCH_HIT_RATE)
    ttl = "1-hour" if batch_ttl == "1h" else "5-minute"
    return (f"50% price, shared instructions in the {ttl} cache; cache hits in a batch are best-effort (expected at "
            f"{hits[batch_ttl]:.0%}, range {BATCH_HIT_RANGE[0]:.0%}-{BATCH_HIT_RANGE[1]:.0%} for a 1-hour entry)")


def recommend(items: int, needs_tools: bool, urgent: bool, dependent: bool, api_key: bool = True,
              claude_cli: bool = False) -> tuple[str, str]:
    """The mode to use and one sentence saying why. Without `api_key` only what can do real work here is
    recommended: agents, or headless when `claude_cli` (a `claude` on PATH) and the job is too big for waves."""
    if dependent:
        return "sequential", "the items depend on each other, so process them in order in one session instead of fanning out"
    if not api_key:
        no_key = "ANTHROPIC_API_KEY is not set, so batch and direct cannot run here (set it for batch at half price)"
        if claude_cli and items > AGENTS_MAX:
            return "headless", f"{no_key}; {items} items are too many waves for one session, and `claude -p` runs them on your Claude Code login"
        return "agents", f"{no_key}; Claude Code subagents do the work on your Claude Code plan"
    if needs_tools:
        if items <= AGENTS_MAX:
            return "agents", "the items need tools or file access, which Claude Code subagents have"
        return "headless", f"the items need tools and there are more than {AGENTS_MAX}, too many waves for one session"
    if items <= HANDFUL:
        return "agents", f"only {items} item(s): subagents in one wave finish fastest with no API key or setup"
    if urgent:
        return "direct", "the job is time-critical, and concurrent Messages API calls finish in minutes at full price"
    return "batch", f"{items} items and no deadline: the Message Batches API costs half and usually ends within an hour"


def build_plan(t: Tally, prices: Prices | None, model: str, needs_tools: bool, urgent: bool, dependent: bool,
               token_source: str, output: OutputEstimate | None = None, api_key: bool = True,
               claude_cli: bool = False, batch_cache: dict | None = None) -> dict:
    """The plan receipt's body. `batch_cache`: the cache choice batch requests would carry (ttl, why), as the
    request builder made it for this job's size; None: batch mode's `auto` choice."""
    if output is not None:
        t.spread = output.spread
    batch_ttl = "auto" if batch_cache is None else (None if batch_cache["ttl"] == "none" else batch_cache["ttl"])
    modes = mode_costs(t, prices, batch_ttl)
    advice = cache_advice(t, prices)
    if not t.prefix_tokens and batch_cache and batch_cache["why"].startswith("--cache"):
        # --cache none left the requests unmarked: say so, not that the instructions are too short to cache
        advice["why"] = f"{batch_cache['why']}: the shared instructions are not cached"
        for name in ("direct_cached", "batch_cached"):
            modes[name].note = advice["why"]
    mode, reason = recommend(t.requests, needs_tools, urgent, dependent, api_key, claude_cli)
    low, high = t.spread
    return {
        "items": t.requests,
        "model": model,
        "tokens": {
            "input": t.input_tokens,
            "input_range": [round(t.input_tokens * (1 - t.input_error)), round(t.input_tokens * (1 + t.input_error))],
            "output_estimate": t.output_tokens,
            "output_range": [round(t.output_tokens * low), min(round(t.output_tokens * high), t.max_output_tokens)],
            "output_source": output.describe() if output else None,
            "output_max": t.max_output_tokens,
            "shared_prefix": t.prefix_tokens,
            "source": token_source,
            **_media_tokens(t),
        },
        **({"attachments": t.listed} if t.listed else {}),
        "cache": {**advice, **({"batch_requests": batch_cache} if batch_cache else {})},
        "prices": None if prices is None else {"input_per_mtok": prices.input, "output_per_mtok": prices.output, "as_of": PRICES_AS_OF},
        "modes": {name: m.as_dict() for name, m in modes.items()},
        "recommended": {"mode": mode, "reason": reason},
    }


def _media_tokens(t: Tally) -> dict:
    """The tokens receipt's attachment part: text input apart from document (pages) and image (pixels) input."""
    if not any(v["items"] for v in t.media.values()):
        return {}
    media = sum(v["tokens"] for v in t.media.values())
    return {"text_input": t.input_tokens - media, "documents": t.media["document"], "images": t.media["image"],
            "media_estimate": "pages x 2,250 tokens (text + page image); images width x height / 750 after the API's downscaling"}


def plan_job(job_kwargs: dict[str, Any], var_words: tuple[str, ...], urgent: bool, needs_tools: bool,
             dependent: bool, count_tokens: bool, emulate: bool, progress: Progress) -> dict:
    """The `plan` receipt for a job (`job_kwargs` as `open_job` takes them; `var_words` the --var values as
    given, repeated in the suggested `prepare` command)."""
    job = open_job(require_price=False, **job_kwargs)
    estimate = output_estimate(job.template, job.model, job.max_tokens)
    tier = job.prices.long_prompt if job.prices is not None else None
    tally = Tally(long_threshold=tier.threshold if tier is not None else None)
    sample: list[dict] = []
    changes = ChangeList()
    sample_media = 0  # the sample's document and image tokens, which the API's count includes
    for n, item in enumerate(job.items(), 1):
        params = job.builder.params(item)
        tally.add(params, estimate.tokens, item=item)
        changes.add(item)
        if count_tokens and len(sample) < COUNT_TOKENS_SAMPLE:
            sample.append(params)
            sample_media += item.media.tokens if item.media is not None else 0
        progress.update(n, None, "items")
    progress.done()
    if tally.requests == 0:
        raise BatchpilotError(f"no items to process ({describe_skipped(job.skipped)})",
                              "point --items at text files or records with content")
    source = f"local estimate (characters / 4, scaled by the model's tokenizer), within {ESTIMATE_ERROR:.0%}"
    if count_tokens:
        # The API client is loaded only when asked to count: a plain plan never imports the SDK's side.
        from batchpilot.api.count_tokens import count_sample

        scale_input_tokens(tally, sample, count_sample(sample, emulate), sample_media)
        source = f"count_tokens API on {len(sample)} of {tally.requests} requests, scaled"
        # counted, not estimated: what is left is the sample's spread; all requests counted leaves none
        tally.input_error = 0.0 if len(sample) == tally.requests else 0.05
    job.builder.retarget(tally.requests)  # the cache choice prepare would make for this many requests
    batch_cache = job.builder.cache_choice if job.mode == "batch" else None
    body = build_plan(tally, job.prices, job.model, needs_tools or job.template.needs_tools, urgent, dependent, source,
                      estimate, api_key_present(), claude_on_path(), batch_cache)
    warnings = []
    if job.prices is None:
        warnings.append(f"unknown model {job.model!r}: costs are null; spending commands refuse it unless --price-in and --price-out are given")
        progress.warn(warnings[-1])
    mode = body["recommended"]["mode"]
    nxt = None
    if mode in EXECUTOR_COMMANDS:
        words = ["prepare", "--template", absolute_source(job_kwargs["template_ref"]), "--items",
                 absolute_source(job_kwargs["items_src"]), "--mode", mode,
                 # the run directory the suggestion makes, named in full: the command runs from any directory
                 "--run", default_run_dir(job.template.name)]
        if job_kwargs["model"]:
            words += ["--model", job_kwargs["model"]]
        for v in var_words:
            words += ["--var", v]
        nxt = next_command(*words)
    extra = {"changes": changes.as_dict()} if changes.files else {}
    listed = [{"source": s, "reason": r, "detail": d} for s, r, d in job.skipped[:MEDIA_LISTED]]
    header = {"csv_header": job.header} if job.header else {}
    return {"command": "plan", "template": job.template.name, **body, **extra, "skipped": skipped_summary(job.skipped),
            **({"skipped_items": listed} if listed else {}), **header,
            "warnings": warnings, "next": nxt}


@dataclass
class ChangeList:
    """For a `git:` source: the changed files with their hunks, and the changed lines counted (the first
    CHANGES_LISTED files are listed; the counts cover all)."""

    files: int = 0
    added: int = 0
    removed: int = 0
    listed: list[dict] = field(default_factory=list)

    def add(self, item: Any) -> None:
        if getattr(item, "kind", None) != "diff":
            return
        fields = item.fields
        self.files += 1
        self.added += int(fields.get("added") or 0)
        self.removed += int(fields.get("removed") or 0)
        if len(self.listed) < CHANGES_LISTED:
            hunks = [line.split(" @@", 1)[0] + " @@" for line in str(fields.get("diff", "")).split("\n")
                     if line.startswith("@@ ")]  # `\n` only, as git cuts lines: a CR inside a line is content
            entry = {"path": item.path, "status": fields.get("status"), "added": fields.get("added"),
                     "removed": fields.get("removed"), "changed_lines": fields.get("changed_lines"), "hunks": hunks}
            if fields.get("old_path"):
                entry["old_path"] = fields["old_path"]
            self.listed.append(entry)

    def as_dict(self) -> dict:
        return {"files": self.files, "lines_added": self.added, "lines_removed": self.removed, "listed": self.listed}


def scale_input_tokens(tally: Tally, sample: list[dict], counted: int, sample_media: int = 0) -> None:
    """Scale the tally's local input estimate by how the API's count of `sample` compares with ours
    (`sample_media`: our estimate of the sample's document and image tokens, part of the API's count)."""
    local = sum(estimate_input_tokens(p) for p in sample) + sample_media
    scale = counted / local if local else 1.0
    tally.input_tokens = round(tally.input_tokens * scale)


def skipped_summary(skipped: list) -> dict:
    """Skipped items per reason, for a receipt."""
    return dict(sorted(Counter(reason for _, reason, _ in skipped).items()))

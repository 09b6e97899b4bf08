"""Plan: what a job will cost and how long it will take in each mode, and which mode to use.

`plan_job` is the `plan` command: it streams a job's requests once, tallies their tokens and builds the
receipt, writing nothing. The rest is pure: it takes the requests a run would contain and returns numbers.
Token counts come from the local estimator (`batchpilot.core.tokens`), scaled by the API's count_tokens
endpoint on a sample when asked; each mode's cost and time comes from `prepare.costs` (direct,
direct_cached, batch, batch_cached with the cache batch mode picks for the job's size, agents, headless).

The output estimate comes, in order of preference, from the template's example output
(`examples/output.json`, counted), its `output_tokens_estimate`, or a share of max_tokens; each with the
spread a real answer's length shows between items. `run --pilot N` measures it instead.

`cache` gives each cache choice's break-even hit rate: (write - 1) / (write - read), 22% for the 5-minute
cache and 53% for the 1-hour one at the usual multipliers, below which caching costs more than it saves.

The recommendation encodes the skill's decision guidance: dependent items → sequential; items that need tools
or file access, or a handful of items → agents (headless past a few hundred); time-critical → direct; large and
not urgent → batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.modes import EXECUTOR_COMMANDS, api_key_present, claude_on_path
from batchpilot.core.models import PRICES_AS_OF, Prices
from batchpilot.core.paths import default_run_dir
from batchpilot.core.progress import Progress
from batchpilot.core.shell import absolute_source, next_command
from batchpilot.core.tokens import ESTIMATE_ERROR, estimate_input_tokens
from batchpilot.prepare.costs import MEDIA_LISTED, Tally, mode_costs
from batchpilot.prepare.estimates import OutputEstimate, cache_advice, output_estimate
from batchpilot.prepare.items import describe_skipped
from batchpilot.prepare.job import open_job

HANDFUL = 10
AGENTS_MAX = 100
CHANGES_LISTED = 200  # changed files the plan receipt lists by name (git: sources)
COUNT_TOKENS_SAMPLE = 50  # requests `plan --count-tokens` sends to the count_tokens endpoint


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
               claude_cli: bool = False, batch_cache: dict | None = None, direct_ttl: str = "5m") -> dict:
    """The plan receipt's body. `batch_cache`: the cache choice batch requests would carry (ttl, why), as the
    request builder made it for this job's size; None: batch mode's `auto` choice. `direct_ttl`: the cache
    direct requests would carry ("1h" under `--cache 1h`, else "5m")."""
    if output is not None:
        t.spread = output.spread
    batch_ttl = "auto" if batch_cache is None else (None if batch_cache["ttl"] == "none" else batch_cache["ttl"])
    modes = mode_costs(t, prices, batch_ttl, direct_ttl)
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
    tally = Tally.for_prices(job.prices)
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
                      estimate, api_key_present(), claude_on_path(), batch_cache, "1h" if job.cache == "1h" else "5m")
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

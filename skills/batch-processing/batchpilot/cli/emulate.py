"""`batchpilot emulate`: serve the local Anthropic API emulator until SIGINT or SIGTERM.

The first stdout line is `{"base_url": "http://127.0.0.1:PORT"}`, printed once the socket accepts
connections; point `ANTHROPIC_BASE_URL` (or an SDK's `base_url`) at it. Every option maps to a field of
`batchpilot.emulator.EmulatorConfig`; references/emulator.md documents them all.
"""

from __future__ import annotations

import json
import sys

import click


@click.command("emulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (keep it loopback).")
@click.option("--allow-remote", is_flag=True, default=False,
              help="Allow a --host other than loopback: its admin endpoints have no authentication.")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="Port; 0 picks a free one.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed + same request = same answer.")
@click.option("--time-scale", type=float, help="Emulated seconds per wall second (86400: a day per second). [1]")
@click.option("--batch-speed", type=float, help="Requests each batch finishes per emulated second. [1000]")
@click.option("--batch-window", type=float, help="Seconds from create to expires_at. [86400]")
@click.option("--archive-after", type=float, help="Seconds from create until results are archived. [29 days]")
@click.option("--cancel-delay", type=float, help="Seconds a canceled batch stays `canceling`. [1]")
@click.option("--batch-cache-hit-rate", type=click.FloatRange(0, 1),
              help="Share of in-batch requests whose cache read hits (best-effort in the real API). [0.6]")
@click.option("--ordered-results", "shuffle_results", flag_value=False, default=None,
              help="Return batch results in input order (the API returns them in any order).")
@click.option("--progressive-counts", is_flag=True, default=None,
              help="Move request_counts as requests finish (default: only when the batch ends, as documented).")
@click.option("--not-found-after-create", type=float,
              help="Wall seconds during which retrieving a new batch answers 404 (a real propagation glitch). [0]")
@click.option("--results-not-found-after-end", type=float,
              help="Emulated seconds after a batch ends during which its results answer 404 (a real glitch). [0]")
@click.option("--max-batch-body-bytes", type=int, help="Batch create bodies above this get a 413. [256 MB]")
@click.option("--max-messages-body-bytes", type=int, help="Messages bodies above this get a 413. [32 MB]")
@click.option("--rpm", "requests_per_minute", type=int, help="Messages requests per minute. [1000000]")
@click.option("--itpm", "input_tokens_per_minute", type=int, help="Messages input tokens per minute. [1e9]")
@click.option("--otpm", "output_tokens_per_minute", type=int, help="Messages output tokens per minute. [1e9]")
@click.option("--batch-rpm", "batch_requests_per_minute", type=int, help="Requests per minute to batch endpoints. [1000000]")
@click.option("--batch-queue-limit", type=int, help="Batch requests allowed in the processing queue. [500000]")
@click.option("--allow-unknown-models", is_flag=True, default=None, help="Answer any model id instead of a 404.")
@click.option("--latency", type=float, help="Wall seconds added to every Messages answer. [0]")
@click.option("--slow-seconds", type=float, help="Wall seconds the `slow` fault adds. [2]")
@click.option("--fault", multiple=True, metavar="SPEC",
              help="Inject a fault: KIND, KIND=RATE, or kind=K,rate=R,match=REGEX,times=N. Repeatable.")
@click.option("--faults-file", type=click.Path(exists=True, dir_okay=False), help="JSON list of fault objects.")
@click.option("--scenario", "scenario_file", type=click.Path(exists=True, dir_okay=False),
              help="JSON list of scripted steps (references/emulator.md).")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), help="Append one JSON line per request here.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where batch requests are spooled (default: a temp dir).")
def emulate(**options: object) -> None:
    """Serve the local Anthropic API emulator on loopback until interrupted.

    Example: batchpilot emulate --port 8765 --fault overloaded=0.03 --log emulator.jsonl
    """
    # Imported when the command runs: the emulator is not needed for `--help`.
    from batchpilot.emulator.serve import serve

    stats = serve(options, on_ready=_announce)
    click.echo(f"emulator stopped after {stats['requests']} requests ({stats['internal_errors']} internal errors)", err=True)


def _announce(base_url: str) -> None:
    sys.stdout.write(json.dumps({"base_url": base_url}) + "\n")
    sys.stdout.flush()
    click.echo(f"emulator serving at {base_url}; Ctrl-C stops it", err=True)

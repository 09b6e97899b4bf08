"""A run's manifest, `run.json`: the one way to open an existing run directory."""

from __future__ import annotations

from pathlib import Path

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import read_json, refuse_links
from batchpilot.core.paths import RUNS_HOME  # noqa: F401  (re-exported: where runs go by default)
from batchpilot.core.shell import next_command

FORMAT_VERSION = 1

_NUMBER = (int, float)
# The fields commands read, and their types: a hand-edited run.json is refused here, once, naming the field,
# instead of failing somewhere later. (name, types, required); nested objects have their own tables.
FIELDS = [
    ("template", dict, True), ("model", str, True), ("item_count", int, True), ("inputs_hash", str, True),
    ("max_tokens", int, False), ("output_style", str, False), ("mode", str, False), ("variables", dict, False),
    ("items_source", str, False), ("prices", (dict, type(None)), False), ("subagent_model", (str, type(None)), False),
    ("skipped", dict, False), ("created_at", str, False), ("batchpilot_version", str, False),
]
NESTED = {
    "template": [("name", str, True), ("hash", str, False), ("path", str, False)],
    "prices": [("input_per_mtok", _NUMBER, True), ("output_per_mtok", _NUMBER, True), ("read_multiplier", _NUMBER, False)],
}


def _field_problem(record: dict, fields: list, prefix: str = "") -> str | None:
    for name, types, required in fields:
        if name not in record:
            if required:
                return f"no {prefix}{name!r} field"
            continue
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, types):
            kinds = types if isinstance(types, tuple) else (types,)
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in kinds)
            return f"{prefix}{name!r} is {json_type(value)}, expected {wanted}"
        if isinstance(value, dict) and name in NESTED:
            problem = _field_problem(value, NESTED[name], f"{prefix}{name}.")
            if problem:
                return problem
    return None


def json_type(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def open_run(run_dir: Path | str) -> dict:
    """The manifest of an existing run, or an error saying how to create one."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file():
        raise BatchpilotError(f"{run_dir} is not a run directory (no run.json)",
                              f"create one with `{next_command('prepare', '--template', 'T', '--items', 'SRC', '--run', run_dir.absolute())}`")
    refuse_links(run_dir, drop_zones=("outputs",))  # outputs/: agents' files, read without following links
    manifest = read_json(run_dir / "run.json", "run manifest")
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise BatchpilotError(f"{run_dir / 'run.json'}: unsupported or damaged manifest", "prepare the run again into a new directory")
    problem = _field_problem(manifest, FIELDS)
    if problem:
        raise BatchpilotError(f"{run_dir / 'run.json'}: {problem}",
                              "run.json was edited or damaged: restore it, or prepare the run again into a new directory")
    return manifest


def require_requests(run_dir: Path) -> dict:
    """The manifest of a run that has its requests.jsonl (every executor needs it)."""
    manifest = open_run(run_dir)
    if not (Path(run_dir) / "requests.jsonl").is_file():
        raise BatchpilotError(f"{run_dir} has no requests.jsonl", "prepare the run again into a new directory")
    return manifest

"""Validation: every output is checked against the run's schema.json with `jsonschema`, whatever the style.

`schema_for_run` finds the schema a run was prepared with, so a run stays mergeable when its template
directory has moved or changed:

1. `<run>/schema.json`, written by `prepare`;
2. the schema inside the first request line (`output_config.format.schema` for json_schema,
   `tools[0].input_schema` for tool) — exactly what the model was given;
3. the prompt style's schema, embedded in the system text after "## Output format";
4. the template directory named in run.json, if its content hash (`prepare.templates.template_hash`) still
   matches (else it is refused: a changed schema would judge old answers by new rules).

`OutputValidator.errors` returns the first few errors as `{path, message}` with JSONPath-style paths
(`$.findings[0].severity`). jsonschema costs about 100 µs on a findings object, which alone would cap merge
near 10,000 items a second, so a conservative fast check runs first: for schemas made only of the common
keywords (type, properties, required, additionalProperties, items, enum, const, length and range bounds) it
is compiled to a few closures that can only say "certainly valid"; anything else, and every rejection, goes
to jsonschema, which stays the single authority on what is invalid and why.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import read_json
from batchpilot.prepare.templates import offline_validator, refuse_outside_refs, template_hash, validator_class

MAX_ERRORS = 5
MAX_MESSAGE = 300
PROMPT_MARKER = "## Output format"
ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "default", "examples",
                         "deprecated", "readOnly", "writeOnly",
                         # asserted by jsonschema only with a format checker, which batchpilot does not pass
                         "format", "contentMediaType", "contentEncoding"})
FAST_DRAFTS = ("https://json-schema.org/draft/2020-12/schema", "http://json-schema.org/draft-07/schema")


# ------------------------------------------------------------------------------------------ finding the schema


def schema_for_run(run_dir: Path, manifest: dict | None = None) -> dict:
    """The JSON Schema the run's outputs must satisfy (see the module docstring for the search order)."""
    schema, _ = locate_schema(run_dir, manifest)
    return schema


def locate_schema(run_dir: Path, manifest: dict | None = None) -> tuple[dict, str]:
    """`(schema, where it came from)`; a BatchpilotError when no trustworthy copy exists or it is not an object."""
    schema, source = _locate_schema(Path(run_dir), manifest)
    if not isinstance(schema, dict):
        raise BatchpilotError(f"{source}: a JSON Schema must be an object, not {type(schema).__name__}",
                              "the run directory was edited or damaged: restore the schema, or prepare a new run")
    return schema, source


def _locate_schema(run_dir: Path, manifest: dict | None = None) -> tuple[dict, str]:
    run_dir = Path(run_dir)
    if (run_dir / "schema.json").is_file():
        return read_json(run_dir / "schema.json", "run schema"), "schema.json"
    if manifest is None:
        manifest = read_json(run_dir / "run.json", "run manifest")
    from_request = _schema_from_first_request(run_dir / "requests.jsonl")
    if from_request is not None:
        return from_request, "requests.jsonl"
    template = manifest.get("template") or {}
    tdir = Path(template.get("path") or "")
    if template.get("path") and (tdir / "schema.json").is_file():
        try:
            unchanged = template_hash(tdir) == template.get("hash")
        except OSError:  # a template file that cannot be read: not the template the run was prepared with
            unchanged = False
        if unchanged:
            return read_json(tdir / "schema.json", "template schema"), str(tdir / "schema.json")
        raise BatchpilotError(
            f"the run has no schema.json and its template {tdir} changed since the run was prepared",
            f"copy the original schema.json into {run_dir}, or restore the template",
        )
    raise BatchpilotError(
        f"cannot find the output schema of {run_dir}: no schema.json, none in requests.jsonl, and the template "
        f"{template.get('path') or '(unknown)'} is gone",
        f"copy the template's schema.json into {run_dir}",
    )


def _schema_from_first_request(path: Path) -> dict | None:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            params = json.loads(fh.readline()).get("params") or {}
    except (OSError, ValueError, AttributeError):
        return None
    schema = ((params.get("output_config") or {}).get("format") or {}).get("schema")
    if isinstance(schema, dict):
        return schema
    tools = params.get("tools") or []
    if tools and isinstance(tools[0], dict) and isinstance(tools[0].get("input_schema"), dict):
        return tools[0]["input_schema"]
    for block in params.get("system") or []:
        text = block.get("text", "") if isinstance(block, dict) else ""
        at = text.rfind(PROMPT_MARKER)
        start = text.find("{", at) if at != -1 else -1
        if start != -1:
            try:
                value, _ = json.JSONDecoder().raw_decode(text, start)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


# ----------------------------------------------------------------------------------------------- validating


def json_path(parts: Iterable[Any]) -> str:
    """`["findings", 0, "severity"]` → `$.findings[0].severity`."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


class OutputValidator:
    """Validates outputs against one schema (its declared draft; 2020-12 when it declares none)."""

    def __init__(self, schema: dict, source: str = "schema.json"):
        if not isinstance(schema, dict):
            raise BatchpilotError(f"{source}: a JSON Schema must be an object", "restore the schema and merge again")
        cls, problem = validator_class(schema)
        if problem is not None:
            raise BatchpilotError(f"{source}: not a valid JSON Schema: {problem.message}", "fix the schema and merge again")
        refuse_outside_refs(schema, source)
        self.schema = schema
        self._validator = offline_validator(cls, schema)
        draft = str(schema.get("$schema", FAST_DRAFTS[0])).rstrip("#")
        self._fast = compile_fast(schema) if draft in FAST_DRAFTS else None

    def errors(self, value: Any, limit: int = MAX_ERRORS) -> list[dict]:
        """The first `limit` errors as `{path, message}`, shallowest first; [] when the value is valid."""
        if self._fast is not None and self._fast(value):
            return []
        found = sorted(islice(self._validator.iter_errors(value), limit * 4), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
        return [{"path": json_path(e.absolute_path), "message": _short(e.message)} for e in found[:limit]]


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def describe(errors: list[dict]) -> str:
    """One line for people: `$.findings[0].severity: 'urgent' is not one of [...]; ...`."""
    return "; ".join(f"{e['path']}: {e['message']}" for e in errors)


# ------------------------------------------------------------------------------------------ the fast check


class _Unsupported(Exception):
    pass


Check = Callable[[Any], bool]

_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    # jsonschema also accepts 1.0 as an integer; the fast check says "not sure" and lets it decide
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
}
_SCALARS = (str, int, float, bool, type(None))


def compile_fast(schema: Any) -> Check | None:
    """A check that returns True only for values the schema certainly accepts; None if the schema is beyond it."""
    try:
        return _compile(schema)
    except _Unsupported:
        return None


def _compile(schema: Any) -> Check:
    if schema is True or schema == {}:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, dict):
        raise _Unsupported
    checks: list[Check] = []
    done = set(ANNOTATIONS)
    if {"properties", "required", "additionalProperties"} & schema.keys():
        checks.append(_object(schema))
        done |= {"properties", "required", "additionalProperties"}
    for key, arg in schema.items():
        if key not in done:
            checks.append(_keyword(key, arg, schema))
    return _all(checks)


def _always(v: Any) -> bool:
    return True


def _never(v: Any) -> bool:
    return False


def _all(checks: list[Check]) -> Check:
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)

    def check(v: Any) -> bool:
        for c in checks:
            if not c(v):
                return False
        return True

    return check


def _object(schema: dict) -> Check:
    if "patternProperties" in schema:
        raise _Unsupported
    props = {name: _compile(sub) for name, sub in (schema.get("properties") or {}).items()}
    required = tuple(schema.get("required") or ())
    extra = schema.get("additionalProperties", True)
    other = None if extra is True or extra == {} else _compile(extra)

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for name in required:
            if name not in v:
                return False
        for key, value in v.items():
            sub = props.get(key)
            if sub is not None:
                if not sub(value):
                    return False
            elif other is not None and not other(value):
                return False
        return True

    return check


def _keyword(key: str, arg: Any, schema: dict) -> Check:
    if key == "type":
        names = [arg] if isinstance(arg, str) else arg
        if not isinstance(names, list) or any(n not in _TYPES for n in names):
            raise _Unsupported
        tests = [_TYPES[n] for n in names]
        return tests[0] if len(tests) == 1 else (lambda v: any(t(v) for t in tests))
    if key in ("enum", "const"):
        allowed = arg if key == "enum" else [arg]
        if not isinstance(allowed, list) or not all(isinstance(a, _SCALARS) for a in allowed):
            raise _Unsupported
        if all(type(a) is str for a in allowed):
            words = frozenset(allowed)
            return lambda v: type(v) is str and v in words
        pairs = {(type(a), a) for a in allowed}
        return lambda v: isinstance(v, _SCALARS) and (type(v), v) in pairs
    if key == "items":
        if not isinstance(arg, (dict, bool)) or "prefixItems" in schema:
            raise _Unsupported
        sub = _compile(arg)

        def each(v: Any) -> bool:
            if isinstance(v, list):
                for x in v:
                    if not sub(x):
                        return False
            return True

        return each
    bounds = {
        "minItems": (list, lambda n, a: n >= a), "maxItems": (list, lambda n, a: n <= a),
        "minLength": (str, lambda n, a: n >= a), "maxLength": (str, lambda n, a: n <= a),
        "minProperties": (dict, lambda n, a: n >= a), "maxProperties": (dict, lambda n, a: n <= a),
    }
    if key in bounds and type(arg) is int:
        kind, ok = bounds[key]
        return lambda v: not isinstance(v, kind) or ok(len(v), arg)
    ranges = {"minimum": lambda n, a: n >= a, "maximum": lambda n, a: n <= a,
              "exclusiveMinimum": lambda n, a: n > a, "exclusiveMaximum": lambda n, a: n < a}
    if key in ranges and type(arg) in (int, float):
        ok = ranges[key]
        return lambda v: type(v) not in (int, float) or ok(v, arg)
    raise _Unsupported

"""Templates: a directory of instructions, a per-item message, and the JSON Schema of one item's output.

A template directory holds `template.json` (name, description, model, max_tokens, output_style, variables),
`system.md` (the shared instructions: identical for every item, so cacheable), `user.md` (the per-item
message) and `schema.json`. `load_template` accepts a bundled name (`code-review`) or a path, and checks
everything up front so a bad template fails before any item is read:

* placeholders are `{{item.content}}`, `{{item.path}}`, `{{item.id}}`, `{{item.FIELD}}` and `{{var.NAME}}`;
  anything else, an undeclared variable, or an item placeholder in the shared `system.md`, is an error that
  names the file, line and column;
* `schema.json` must be a valid JSON Schema (its declared draft, default 2020-12).

Two template.json keys make the output schema depend on variables; `bind_variables` applies them once the
variables are known, and the request builder uses the bound template:

* `"schema_from_var": "NAME"` — the output schema is the JSON Schema file the variable names (a path tried
  from the current directory, then from the template directory); `schema.json` is the fallback and example;
* `"enum_from_var": {"/json/pointer": "NAME"}` — the subschema at that pointer gets `enum` set to the
  variable's comma-separated values, so the output can only use the user's labels.

Rendering wraps `{{item.content}}` in `<item_content>` delimiters because items are untrusted data and the
instructions say so. Every value that comes from an item (content, path, id, any field) is escaped the same
way: a delimiter tag inside it, in any letter case or spacing, gets a backslash after its `<`, so no item can open or close
the wrapper.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import read_json
from batchpilot.core.paths import TEMPLATES_DIR

TEMPLATE_FILES = ("template.json", "system.md", "user.md", "schema.json")  # what a template's content hash covers
DIFF_VARIANT = "user-diff.md"  # optional: the per-item message for items from a change (`--items git:...`)
OUTPUT_STYLES = ("json_schema", "tool", "prompt")
PLACEHOLDER_RE = re.compile(r"\{\{(.*?)\}\}")
NAME_RE = re.compile(r"^\s*(item|var)\.([A-Za-z_][A-Za-z0-9_]*)\s*$")
OPEN_TAG, CLOSE_TAG = "<item_content>", "</item_content>"
DIFF_OPEN, DIFF_CLOSE = "<item_diff>", "</item_diff>"
# Any spelling a model could read as a delimiter: `</item_content>`, `< / ITEM_DIFF >`, `<item_content`.
DELIMITER_RE = re.compile(r"<(\s*/?\s*item_(?:content|diff))", re.IGNORECASE)


@dataclass
class Template:
    """A loaded, checked template."""

    name: str
    path: Path
    description: str
    model: str
    max_tokens: int
    output_style: str
    system: str
    user: str
    schema: dict
    variables: dict[str, dict] = field(default_factory=dict)
    subagent_model: str | None = None
    needs_tools: bool = False
    output_tokens_estimate: int | None = None
    content_hash: str = ""
    meta: dict = field(default_factory=dict)
    schema_path: Path | None = None  # where `schema` came from (schema.json, or the schema_from_var file)
    user_diff: str | None = None  # user-diff.md, the message for an item from a change, when the template has one

    def user_for(self, item: Any) -> str:
        """The per-item message text: the diff variant for an item from a change, else user.md."""
        return self.user_diff if self.user_diff is not None and getattr(item, "kind", None) == "diff" else self.user


def bundled_names() -> list[str]:
    """Names of the templates shipped with the skill."""
    if not TEMPLATES_DIR.is_dir():
        return []
    return sorted(p.name for p in TEMPLATES_DIR.iterdir() if (p / "template.json").is_file())


def resolve_template_dir(ref: str) -> Path:
    """A bundled name or a directory path → the template directory, or an error listing what exists."""
    candidate = Path(ref).expanduser()
    if ("/" in ref or ref.startswith(".")) or candidate.is_dir():
        if (candidate / "template.json").is_file():
            return candidate.resolve()
        raise BatchpilotError(
            f"{ref!r} is not a template directory (no template.json)",
            "a template directory holds template.json, system.md, user.md and schema.json; "
            "`batchpilot templates init NAME` creates one",
        )
    bundled = TEMPLATES_DIR / ref
    if (bundled / "template.json").is_file():
        return bundled
    names = ", ".join(bundled_names()) or "none"
    raise BatchpilotError(f"unknown template {ref!r}", f"bundled templates: {names}; or pass a template directory path")


def _check_placeholders(text: str, filename: str, variables: dict, allow_item: bool) -> None:
    for match in PLACEHOLDER_RE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        col = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
        where = f"{filename} line {line} column {col}"
        parsed = NAME_RE.match(match.group(1))
        if not parsed:
            raise BatchpilotError(
                f"{where}: unknown placeholder {match.group(0)!r}",
                "placeholders are {{item.content}}, {{item.path}}, {{item.id}}, {{item.FIELD}} and {{var.NAME}}",
            )
        kind, name = parsed.groups()
        if kind == "item" and not allow_item:
            raise BatchpilotError(
                f"{where}: {match.group(0)} in {filename}, which is shared by every item",
                "move item placeholders to user.md; system.md must be identical for every item so it can be cached",
            )
        if kind == "var" and name not in variables:
            declared = ", ".join(sorted(variables)) or "none"
            raise BatchpilotError(
                f"{where}: {match.group(0)} is not declared in template.json (declared variables: {declared})",
                f'add "{name}" under "variables" in template.json, with a description and an optional default',
            )


def validator_class(schema: dict) -> tuple[Any, Any]:
    """(the jsonschema validator class of the schema's declared draft, 2020-12 when it declares none; the
    `SchemaError` when the schema breaks that draft's metaschema, else None)."""
    # jsonschema takes tens of milliseconds to import: only the commands that check a schema load it
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)  # checks against the bundled metaschemas: nothing is fetched
    except SchemaError as exc:
        return cls, exc
    return cls, None


def offline_validator(cls: Any, schema: dict) -> Any:
    """A validator of `schema` that can resolve only references inside it: built on an empty registry with
    no retrieval, so it never opens a network connection (jsonschema would otherwise fetch remote refs)."""
    try:
        from referencing import Registry  # jsonschema >= 4.18 resolves references through it
    except ImportError:  # an older jsonschema: load-time refusal of outside references still holds
        return cls(schema)
    return cls(schema, registry=Registry())


REF_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")


def outside_refs(schema: Any) -> list[tuple[str, str]]:
    """(JSON pointer, value) of every reference that is not local (`#...`): a schema must be self-contained,
    because a validator would fetch a remote one once per item (and fail when it is unreachable)."""
    found, stack = [], [("", schema)]
    while stack:  # iterative: a deep schema must not exhaust the recursion limit
        where, node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in REF_KEYS and isinstance(value, str) and not value.startswith("#"):
                    found.append((f"{where}/{key}", value))
                else:
                    stack.append((f"{where}/{key}", value))
        elif isinstance(node, list):
            stack.extend((f"{where}/{i}", v) for i, v in enumerate(node))
    return sorted(found)


def refuse_outside_refs(schema: Any, source: str) -> None:
    """An Error naming the first non-local `$ref` of `schema` (read from `source`)."""
    refs = outside_refs(schema)
    if refs:
        where, ref = refs[0]
        more = f" (and {len(refs) - 1} more)" if len(refs) > 1 else ""
        raise BatchpilotError(f"{source}: {where} is {ref!r}, a reference outside the schema{more}",
                              "schemas must be self-contained: copy the referenced schema under \"$defs\" and "
                              "point at it with \"$ref\": \"#/$defs/NAME\"")


def _check_schema(schema: Any, path: Path) -> None:
    if not isinstance(schema, dict):
        raise BatchpilotError(f"{path}: a JSON Schema must be an object", f"start {path.name} with {{\"type\": \"object\", ...}}")
    refuse_outside_refs(schema, str(path))
    _, problem = validator_class(schema)
    if problem is not None:
        spot = "/" + "/".join(str(p) for p in problem.path) if problem.path else "(top level)"
        raise BatchpilotError(
            f"{path}: invalid JSON Schema at {spot}: {problem.message}",
            f"fix {path.name}; it must be a valid JSON Schema (draft 2020-12 unless $schema says otherwise)",
        )
    if schema.get("type") != "object":
        raise BatchpilotError(
            f"{path}: the top-level schema must have \"type\": \"object\"",
            "each item's output is one JSON object; wrap lists in a property, e.g. {\"findings\": [...]}",
        )


def template_hash(tdir: Path) -> str:
    """`sha256:...` over a template directory's TEMPLATE_FILES (names and bytes): run.json records it, so a
    changed template is noticed. An OSError when a file cannot be read."""
    digest = hashlib.sha256()
    for name in TEMPLATE_FILES:
        digest.update(name.encode() + b"\0" + (tdir / name).read_bytes() + b"\1")
    if (tdir / DIFF_VARIANT).is_file():
        digest.update(DIFF_VARIANT.encode() + b"\0" + (tdir / DIFF_VARIANT).read_bytes() + b"\1")
    return "sha256:" + digest.hexdigest()


def load_template(ref: str) -> Template:
    """Load and check a template by bundled name or path."""
    tdir = resolve_template_dir(ref)
    for name in TEMPLATE_FILES:
        if not (tdir / name).is_file():
            raise BatchpilotError(f"template {tdir.name!r} is missing {name}", f"add {name} to {tdir}")
    meta = read_json(tdir / "template.json", "template.json")
    if not isinstance(meta, dict):
        raise BatchpilotError(f"{tdir / 'template.json'}: expected a JSON object", "see references/templates.md")
    texts = {n: (tdir / n).read_text(encoding="utf-8") for n in ("system.md", "user.md")}
    schema = read_json(tdir / "schema.json", "schema.json")
    _check_schema(schema, tdir / "schema.json")
    variables = meta.get("variables") or {}
    if not isinstance(variables, dict):
        raise BatchpilotError(f"{tdir / 'template.json'}: \"variables\" must be an object", 'e.g. "variables": {"labels": {"description": "..."}}')
    style = meta.get("output_style", "json_schema")
    if style not in OUTPUT_STYLES:
        raise BatchpilotError(f"{tdir / 'template.json'}: output_style {style!r} is not one of {', '.join(OUTPUT_STYLES)}",
                              "json_schema is preferred; tool and prompt are fallbacks")
    max_tokens = meta.get("max_tokens", 4096)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BatchpilotError(f"{tdir / 'template.json'}: max_tokens {max_tokens!r} must be a positive integer", "e.g. \"max_tokens\": 4096")
    _check_schema_vars(meta, variables, tdir / "template.json")
    _check_placeholders(texts["system.md"], "system.md", variables, allow_item=False)
    _check_placeholders(texts["user.md"], "user.md", variables, allow_item=True)
    user_diff = None
    if (tdir / DIFF_VARIANT).is_file():
        user_diff = (tdir / DIFF_VARIANT).read_text(encoding="utf-8")
        _check_placeholders(user_diff, DIFF_VARIANT, variables, allow_item=True)
    return Template(
        name=str(meta.get("name") or tdir.name),
        path=tdir,
        description=str(meta.get("description", "")),
        model=str(meta.get("model", "claude-sonnet-5")),
        max_tokens=max_tokens,
        output_style=style,
        system=texts["system.md"],
        user=texts["user.md"],
        schema=schema,
        variables=variables,
        subagent_model=meta.get("subagent_model"),
        needs_tools=bool(meta.get("needs_tools", False)),
        output_tokens_estimate=meta.get("output_tokens_estimate"),
        content_hash=template_hash(tdir),
        meta=meta,
        schema_path=tdir / "schema.json",
        user_diff=user_diff,
    )


def _check_schema_vars(meta: dict, variables: dict, where: Path) -> None:
    declared = ", ".join(sorted(variables)) or "none"
    source = meta.get("schema_from_var")
    if source is not None and source not in variables:
        raise BatchpilotError(f"{where}: schema_from_var {source!r} is not a declared variable (declared: {declared})",
                              f'declare "{source}" under "variables", with a description and an example path')
    enums = meta.get("enum_from_var") or {}
    if not isinstance(enums, dict):
        raise BatchpilotError(f"{where}: enum_from_var must map JSON pointers to variable names",
                              'e.g. "enum_from_var": {"/properties/label": "labels"}')
    for pointer, name in enums.items():
        if name not in variables:
            raise BatchpilotError(f"{where}: enum_from_var {pointer!r} names {name!r}, which is not a declared variable (declared: {declared})",
                                  f'declare "{name}" under "variables"')


def schema_file_for(template: Template, value: str) -> Path:
    """The schema file a schema_from_var value names: from the current directory, else from the template directory."""
    given = Path(value).expanduser()
    for candidate in (given, template.path / given):
        if candidate.is_file():
            return candidate
    raise BatchpilotError(
        f"template {template.name!r}: the schema file {value!r} (variable {template.meta['schema_from_var']!r}) does not exist",
        f"pass a JSON Schema file: --var {template.meta['schema_from_var']}=PATH (relative to the current directory "
        f"or to {template.path})",
    )


def split_list(value: str) -> list[str]:
    """A comma-separated variable value → its distinct, non-empty entries in order."""
    return list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


def bind_variables(template: Template, values: dict[str, str]) -> Template:
    """The template with its output schema made final for these variables (schema_from_var, enum_from_var).

    A template that uses neither is returned unchanged. Otherwise the copy's `content_hash` also covers the
    effective schema, so a changed schema file means a different run.
    """
    source = template.meta.get("schema_from_var")
    enums = template.meta.get("enum_from_var") or {}
    if source is None and not enums:
        return template
    schema, schema_path = template.schema, template.schema_path
    if source is not None:
        schema_path = schema_file_for(template, values[source])
        schema = read_json(schema_path, "schema file")
        _check_schema(schema, schema_path)
    schema = json.loads(json.dumps(schema))  # a private copy to write enums into
    for pointer, name in enums.items():
        node = _at_pointer(schema, pointer)
        if not isinstance(node, dict):
            raise BatchpilotError(f"{template.path / 'template.json'}: enum_from_var pointer {pointer!r} is not a subschema of {schema_path}",
                                  "point it at the string schema that holds one value, e.g. /properties/label")
        choices = split_list(values[name])
        if not choices:
            raise BatchpilotError(f"template {template.name!r}: the variable {name!r} is empty",
                                  f"give a comma-separated list, e.g. --var {name}={_example(template, name, 'a,b,c')}")
        node["enum"] = choices
    digest = hashlib.sha256(template.content_hash.encode() + b"\0" + json.dumps(schema, sort_keys=True).encode())
    return replace(template, schema=schema, schema_path=schema_path, content_hash="sha256:" + digest.hexdigest())


def _example(template: Template, name: str, fallback: str) -> str:
    spec = template.variables.get(name)
    return str(spec.get("example", fallback)) if isinstance(spec, dict) else fallback


def _at_pointer(schema: Any, pointer: str) -> Any:
    node = schema
    for part in [p for p in pointer.split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, dict) else None
    return node


def resolve_variables(template: Template, given: dict[str, str]) -> dict[str, str]:
    """Given `--var` values plus defaults; an unknown or missing variable is an error saying how to pass it."""
    for name in given:
        if name not in template.variables:
            declared = ", ".join(sorted(template.variables)) or "none"
            raise BatchpilotError(f"template {template.name!r} has no variable {name!r} (it has: {declared})",
                                  f"see `batchpilot templates show {template.name}`")
    values: dict[str, str] = {}
    for name, spec in template.variables.items():
        spec = spec if isinstance(spec, dict) else {}
        if name in given:
            values[name] = given[name]
        elif "default" in spec:
            values[name] = str(spec["default"])
        else:
            example = spec.get("example", "...")
            raise BatchpilotError(
                f"template {template.name!r} needs the variable {name!r}: {spec.get('description', '')}".rstrip(": "),
                f"pass it with --var {name}={example}",
            )
    return values


def escape_item_text(text: str) -> str:
    """Item data made inert: a backslash after the `<` of every delimiter-like tag (`<\\/item_content>`,
    `<\\/item_diff>`), in any letter case or spacing, so it reads as text and cannot open or close a wrapper."""
    return DELIMITER_RE.sub(r"<\\\1", text)


def wrap_content(content: str, open_tag: str = OPEN_TAG, close_tag: str = CLOSE_TAG) -> str:
    """The item inside delimiters; a delimiter inside the item is escaped so it cannot break out."""
    return f"{open_tag}\n{escape_item_text(content)}\n{close_tag}"


def render(text: str, item: Any | None, variables: dict[str, str]) -> str:
    """Fill placeholders. `item` needs custom_id, content, path and fields (a batchpilot.prepare.items.Item)."""

    def fill(match: re.Match) -> str:
        kind, name = NAME_RE.match(match.group(1)).groups()  # type: ignore[union-attr]
        if kind == "var":
            return variables[name]
        assert item is not None
        if name == "content":
            return wrap_content(item.content)
        if name == "diff" and getattr(item, "kind", None) == "diff":
            # The diff quotes the file, so it is untrusted data too, delimited like the content.
            return wrap_content(str(item.fields.get("diff", "")), DIFF_OPEN, DIFF_CLOSE)
        if name == "id":
            return escape_item_text(item.custom_id)
        if name == "path":
            return escape_item_text(item.path or item.source)
        if name in item.fields:
            value = item.fields[name]
            return escape_item_text(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        raise BatchpilotError(
            f"item {item.custom_id} ({item.source}) has no field {name!r} for {{{{item.{name}}}}}",
            f"available fields: {', '.join(sorted(item.fields)) or 'none'}; change user.md or the items",
        )

    return PLACEHOLDER_RE.sub(fill, text)

"""The API's rules for native JSON-schema output: which schemas `output_config.format` accepts.

The Messages API compiles a `json_schema` output format into a grammar, so it accepts only a subset of JSON
Schema (the same subset as strict tools). `api_schema_problems(schema)` lists every violation with its JSON
pointer, so a template fails at `plan`/`prepare` time instead of as thousands of errored requests:

* every object (`"type": "object"` or with `properties`) sets `"additionalProperties": false`;
* no numeric or length constraints (`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`,
  `multipleOf`, `minLength`, `maxLength`, `maxItems`, `minProperties`, `maxProperties`, ...), and `minItems`
  only 0 or 1;
* none of `oneOf` (use `anyOf`), `not`, `if`/`then`/`else`, `patternProperties`, `propertyNames`,
  `dependentRequired`, `dependentSchemas`, `prefixItems`, `contains`, `uniqueItems`, `unevaluated*`,
  `content*`;
* `format` only date-time, time, date, duration, email, hostname, uri, ipv4, ipv6, uuid;
* `pattern` without backreferences, lookaround or word boundaries;
* `enum` and `const` values are strings, numbers, booleans or null;
* `$ref` only local (`#/...`), and no recursion through `$ref`;
* types only object, array, string, integer, number, boolean, null;
* at most 24 optional properties and 16 union-typed properties (`anyOf` or a type list) in the schema.

The `tool` and `prompt` styles have none of these limits (a non-strict tool takes any JSON Schema), and the
merger validates every output with the full schema whatever the style.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

SUPPORTED_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
SUPPORTED_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"})
MAX_OPTIONAL_PROPERTIES = 24
MAX_UNION_PROPERTIES = 16
UNSUPPORTED = {
    **dict.fromkeys(("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
                    "numeric constraints are not supported; state the range in the description"),
    **dict.fromkeys(("minLength", "maxLength"), "string length constraints are not supported; state the length in the description"),
    **dict.fromkeys(("maxItems", "uniqueItems", "contains", "minContains", "maxContains", "prefixItems", "unevaluatedItems"),
                    "array constraints other than items and minItems 0/1 are not supported"),
    **dict.fromkeys(("minProperties", "maxProperties", "patternProperties", "propertyNames", "dependentRequired",
                     "dependentSchemas", "dependencies", "unevaluatedProperties"),
                    "objects take only properties, required and additionalProperties: false"),
    "oneOf": "oneOf is not supported; use anyOf",
    **dict.fromkeys(("not", "if", "then", "else"), "conditional and negated schemas are not supported"),
    **dict.fromkeys(("contentEncoding", "contentMediaType", "contentSchema"), "content keywords are not supported"),
}
# Subschema positions: keyword -> how its value holds schemas.
SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
SCHEMA_SINGLE = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
                 "unevaluatedItems", "unevaluatedProperties")
BAD_REGEX = re.compile(r"\\[1-9]|\\k<|\(\?<?[=!]|\\[bB]")


def _pointer(parts: tuple) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts) if parts else "(top level)"


def _subschemas(node: dict, path: tuple) -> Iterator[tuple[Any, tuple]]:
    for key in SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            for name, sub in node[key].items():
                yield sub, path + (key, name)
    for key in SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            for i, sub in enumerate(node[key]):
                yield sub, path + (key, i)
    for key in SCHEMA_SINGLE:
        if isinstance(node.get(key), dict):
            yield node[key], path + (key,)
        elif key == "items" and isinstance(node.get(key), list):
            for i, sub in enumerate(node[key]):
                yield sub, path + (key, i)


def _is_primitive(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _resolve(root: dict, ref: str) -> Any:
    node: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _node_problems(node: dict, where: str) -> list[str]:
    problems = []
    types = node.get("type")
    type_list = types if isinstance(types, list) else [types] if types is not None else []
    for t in type_list:
        if t not in SUPPORTED_TYPES:
            problems.append(f"{where}: type {t!r} is not supported")
    if "object" in type_list or "properties" in node:
        if node.get("additionalProperties") is not False:
            problems.append(f'{where}: objects must set "additionalProperties": false')
    for key, why in UNSUPPORTED.items():
        if key in node:
            problems.append(f"{where}: {key!r} — {why}")
    if "minItems" in node and node["minItems"] not in (0, 1):
        problems.append(f"{where}: 'minItems' {node['minItems']!r} — only 0 or 1 is supported")
    if "format" in node and node["format"] not in SUPPORTED_FORMATS:
        problems.append(f"{where}: format {node['format']!r} is not supported (supported: {', '.join(sorted(SUPPORTED_FORMATS))})")
    if isinstance(node.get("pattern"), str) and BAD_REGEX.search(node["pattern"]):
        problems.append(f"{where}: pattern '{node['pattern']}' uses backreferences, lookaround or \\b, which are not supported")
    if isinstance(node.get("enum"), list) and not all(_is_primitive(v) for v in node["enum"]):
        problems.append(f"{where}: enum values must be strings, numbers, booleans or null")
    if "const" in node and not _is_primitive(node["const"]):
        problems.append(f"{where}: const must be a string, number, boolean or null")
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        problems.append(f"{where}: $ref {ref!r} is not local; only #/$defs/... references are supported")
    return problems


def _refs_in(node: Any) -> set[str]:
    """The local $refs anywhere inside `node`."""
    found, todo = set(), [node]
    while todo:
        current = todo.pop()
        if isinstance(current, dict):
            if isinstance(current.get("$ref"), str) and current["$ref"].startswith("#"):
                found.add(current["$ref"])
            todo.extend(sub for sub, _ in _subschemas(current, ()))
    return found


def _recursive_refs(schema: dict) -> set[str]:
    """The $refs that lie on a cycle (a definition that reaches itself)."""
    graph = {ref: _refs_in(_resolve(schema, ref)) for ref in _refs_in(schema)}
    todo = list(graph)
    while todo:  # close the graph over refs found inside definitions
        ref = todo.pop()
        for nxt in graph[ref]:
            if nxt not in graph:
                graph[nxt] = _refs_in(_resolve(schema, nxt))
                todo.append(nxt)
    cyclic = set()
    for start in graph:
        seen, frontier = set(), list(graph[start])
        while frontier:
            ref = frontier.pop()
            if ref == start:
                cyclic.add(start)
                break
            if ref not in seen:
                seen.add(ref)
                frontier.extend(graph.get(ref, ()))
    return cyclic


def api_schema_problems(schema: Any) -> list[str]:
    """Every way `schema` breaks the API's native JSON-schema output rules, each with its JSON pointer."""
    if not isinstance(schema, dict):
        return ["(top level): the schema must be a JSON object"]
    problems: list[str] = []
    optional = unions = 0
    cyclic = _recursive_refs(schema)
    stack: list[tuple[Any, tuple]] = [(schema, ())]
    while stack:
        node, path = stack.pop()
        if not isinstance(node, dict):
            continue
        where = _pointer(path)
        problems += _node_problems(node, where)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            if _resolve(schema, ref) is None:
                problems.append(f"{where}: $ref {ref!r} points at nothing")
            elif ref in cyclic:
                problems.append(f"{where}: $ref {ref!r} is recursive; recursive schemas are not supported")
        props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        required = set(node["required"]) if isinstance(node.get("required"), list) else set()
        optional += len([p for p in props if p not in required])
        unions += len([p for p in props.values() if isinstance(p, dict) and ("anyOf" in p or isinstance(p.get("type"), list))])
        stack.extend(reversed(list(_subschemas(node, path))))
    if optional > MAX_OPTIONAL_PROPERTIES:
        problems.append(f"(whole schema): {optional} optional properties; the API allows at most {MAX_OPTIONAL_PROPERTIES} "
                        "(make fields required and nullable instead)")
    if unions > MAX_UNION_PROPERTIES:
        problems.append(f"(whole schema): {unions} properties with anyOf or a type list; the API allows at most {MAX_UNION_PROPERTIES}")
    return problems

"""Doc honesty: what README.md, SKILL.md and the references tell a user to run exists and works.

* every `batchpilot COMMAND [--flag ...]` written in their code is a real command with those flags, and its
  `--help` exits 0;
* SKILL.md's frontmatter follows the Agent Skills spec and the house style; the files it points to exist;
* every bundled template's example output validates against its schema;
* the README's main command runs as written (from a scratch directory laid out like a clone's root, so its run
  lands there, not in the repository), and its test command is what .ci/run runs;
* no project file names a path of the machine it was written on, and the skill folder holds no build output
  (an install of the skill copies the folder whole);
* the commands that never call the API never import the `anthropic` SDK (it is slow to import).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import jsonschema
import pytest

from conftest import ROOT, SAMPLES, SKILL_DIR

README = ROOT / "README.md"
SKILL_MD = SKILL_DIR / "SKILL.md"
DOCS = [README, SKILL_MD, *sorted((SKILL_DIR / "references").glob("*.md"))]
SPEC_KEYS = {"name", "description", "license", "compatibility", "metadata", "allowed-tools"}
# Where this checkout and the machine's temp files live: no committed file may name them.
MACHINE_PATHS = (str(ROOT.parent) + os.sep, tempfile.gettempdir() + os.sep)

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)?)`")  # a code span, possibly wrapped onto a second line
INDENTED = re.compile(r"^ {4,}((?:batchpilot|\$BP)\s.*)$", re.M)
# `batchpilot plan`, `scripts/batchpilot plan`, `"${CLAUDE_SKILL_DIR}/scripts/batchpilot" plan`, `$BP plan`
MENTION = re.compile(r"""(?:(?<![\w.-])|(?<=/))(?:batchpilot"?|\$BP)[ \t]+([a-z][a-z0-9-]*)([^\n`]*)""")
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def code_snippets(text: str) -> list[str]:
    """The text of every fenced block line, indented command line and inline code span."""
    snippets: list[str] = []
    for block in FENCE.findall(text):
        snippets += block.splitlines()
    prose = FENCE.sub("", text)
    snippets += INDENTED.findall(prose)
    snippets += [span.replace("\n", " ") for span in INLINE.findall(prose)]
    return snippets


def mentions() -> list[tuple[str, str, str | None, tuple[str, ...]]]:
    """(doc, command, subcommand-or-None candidate, flags) for every command written in the docs."""
    found = []
    for doc in DOCS:
        if not doc.exists():
            continue
        for snippet in code_snippets(doc.read_text()):
            snippet = re.sub(r"\s#\s.*$", "", snippet)  # a shell comment
            for name, rest in MENTION.findall(snippet):
                words = rest.split()
                sub = words[0] if words and re.fullmatch(r"[a-z][a-z0-9-]*", words[0]) else None
                found.append((rel(doc), name, sub, tuple(sorted(set(FLAG.findall(rest))))))
    return sorted(set(found))


MENTIONS = mentions()


def resolve(name: str, sub: str | None) -> tuple[list[str], click.Command]:
    """The argv prefix and the click command that a mention names."""
    from batchpilot.cli.main import COMMANDS, cli

    assert name in COMMANDS, f"`batchpilot {name}` is not a command; the commands are {sorted(COMMANDS)}"
    ctx = click.Context(cli)
    command = cli.get_command(ctx, name)
    assert command is not None
    if isinstance(command, click.Group):
        assert sub is not None, f"`batchpilot {name}` needs a subcommand"
        assert sub in command.list_commands(ctx), f"`batchpilot {name} {sub}`: no such subcommand"
        return [name, sub], command.get_command(ctx, sub)
    return [name], command


def test_the_docs_mention_commands():
    names = {name for _, name, _, _ in MENTIONS}
    assert {"plan", "prepare"} <= names, MENTIONS


@pytest.mark.parametrize("doc,name,sub,flags", MENTIONS, ids=[f"{d}:{n}{'-' + s if s else ''}" for d, n, s, _ in MENTIONS])
def test_every_documented_command_exists_with_its_flags(doc, name, sub, flags, bp):
    argv, command = resolve(name, sub)
    known = {"--help", "-h"}
    for param in command.params:
        known.update(getattr(param, "opts", []), getattr(param, "secondary_opts", []))
    unknown = [f for f in flags if f not in known]
    assert not unknown, f"{doc}: `batchpilot {' '.join(argv)}` has no option {unknown}"
    shown = bp(*argv, "--help")
    assert shown.code == 0, shown.stderr
    assert "Usage:" in shown.stdout


def test_every_command_has_working_help(bp):
    from batchpilot.cli.main import COMMANDS

    shown = bp("--help")
    assert shown.code == 0
    for name in COMMANDS:
        assert re.search(rf"^\s+{re.escape(name)}\s", shown.stdout, re.M), f"`batchpilot --help` does not list {name}"
        got = bp(name, "--help")
        assert got.code == 0, f"batchpilot {name} --help: {got.stderr}"


# --- SKILL.md ------------------------------------------------------------------------------------------------------


def frontmatter() -> dict:
    from skills_ref.parser import parse_frontmatter  # the Agent Skills reference parser (strict, block-style YAML)

    metadata, _ = parse_frontmatter(SKILL_MD.read_text())
    return metadata


def test_skill_frontmatter_has_only_the_spec_keys():
    meta = frontmatter()
    assert set(meta) <= SPEC_KEYS, f"keys outside the Agent Skills spec: {sorted(set(meta) - SPEC_KEYS)}"
    assert meta["name"] == SKILL_DIR.name


def test_skill_description_says_when_to_use_it():
    description = " ".join(frontmatter()["description"].split())
    assert len(description) <= 1024
    assert "<" not in description and ">" not in description
    assert "Use when" in description


def test_every_reference_the_skill_points_to_exists():
    text = SKILL_MD.read_text()
    pointed = sorted(set(re.findall(r"references/[\w./-]*\w", text)))
    assert pointed, "SKILL.md points to no references/ file"
    missing = [p for p in pointed if not (SKILL_DIR / p).is_file()]
    assert not missing, f"SKILL.md points to missing files: {missing}"


def test_every_repository_path_in_the_readme_exists():
    text = README.read_text()
    paths = set()
    for snippet in code_snippets(text):
        for token in re.findall(r"(?<![\w/.-])((?:skills|tests|bench|\.claude-plugin|\.ci)/[\w./-]*)", snippet):
            if not re.search(r"[*<>]", token):
                paths.add(token.rstrip("./") if token.endswith("/.") else token)
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README.md names paths that do not exist: {missing}"


# --- templates -----------------------------------------------------------------------------------------------------


TEMPLATES = sorted(p for p in (SKILL_DIR / "templates").iterdir() if p.is_dir())


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_template_example_output_validates_against_its_schema(template):
    for needed in ("template.json", "system.md", "user.md", "schema.json", "examples/output.json"):
        assert (template / needed).is_file(), f"{rel(template)} lacks {needed}"
    schema = json.loads((template / "schema.json").read_text())
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    errors = sorted(validator(schema).iter_errors(json.loads((template / "examples" / "output.json").read_text())), key=str)
    assert not errors, f"{rel(template)}/examples/output.json: {errors[0].message} at {list(errors[0].absolute_path)}"


# --- the README's two commands -------------------------------------------------------------------------------------


def readme_two_commands() -> list[str]:
    section = README.read_text().split("## The two commands", 1)[1].split("\n## ", 1)[0]
    [block] = FENCE.findall(section)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_command():
    commands = readme_two_commands()
    assert len(commands) == 2, commands
    [test_command] = [c for c in commands if "tests/run.py" in c]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines, f".ci/run does not run the README's test command {test_command!r}"


def runs_in_repository() -> set[str]:
    runs = ROOT / ".batchpilot" / "runs"
    return {p.name for p in runs.iterdir()} if runs.is_dir() else set()


def test_readme_main_command_runs_as_written(tmp_path):
    [main_command] = [c for c in readme_two_commands() if "tests/run.py" not in c]
    argv = shlex.split(main_command)
    # As from a clone's root, but in a scratch directory whose skills/ is the repository's: the command's paths
    # resolve as written and what it writes under the current directory stays out of the repository.
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "skills").symlink_to(ROOT / "skills", target_is_directory=True)
    before = runs_in_repository()
    # With a python3 that has the dependencies first on PATH (the shim's shebang).
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["command"] == argv[1]
    assert receipt.get("next"), "the receipt should suggest the next command"
    assert (clone / receipt["run"] / "merged.jsonl").is_file(), receipt
    assert runs_in_repository() == before, "the command wrote a run into the repository"


# --- hygiene -------------------------------------------------------------------------------------------------------


def project_files() -> list[Path]:
    """The files a commit of this tree would hold, tests/ aside."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode == 0:
        names = [n for n in listed.stdout.split("\0") if n]
    else:  # not a git checkout: walk, leaving out what .gitignore would
        skip = {".git", ".venv", ".venv-sdk1", ".tools", "__pycache__", ".pytest_cache", ".batchpilot"}
        names = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                 if p.is_file() and not skip & set(p.relative_to(ROOT).parts) and ".egg-info" not in p.as_posix()]
    return [ROOT / n for n in names if not n.startswith("tests/") and (ROOT / n).is_file()]


def test_no_project_file_names_a_machine_path():
    offenders = []
    for path in project_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        offenders += [f"{rel(path)}: {needle}" for needle in MACHINE_PATHS if needle in text]
    assert not offenders, offenders


def test_the_skill_folder_holds_no_build_output():
    # An editable install (tests/run.py makes one) must leave its egg-info outside the skill folder
    # (pyproject.toml's [tool.distutils.egg_info]); playbooks and the plugin installer copy the folder whole.
    leftovers = sorted(rel(p) for pattern in ("**/*.egg-info", "**/build", "**/.venv*") for p in SKILL_DIR.glob(pattern)
                       if p.is_dir())
    assert not leftovers, f"build output in the skill folder: {leftovers}"


@pytest.mark.parametrize("args", [
    ["--help"],
    ["plan", "--template", "code-review", "--items", f"{SAMPLES}/*.py"],
    ["prepare", "--template", "code-review", "--items", f"{SAMPLES}/*.py", "--run", "run"],
], ids=["help", "plan", "prepare"])
def test_commands_that_do_not_call_the_api_do_not_import_the_sdk(args, tmp_path):
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "batchpilot", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert imported, "python -X importtime printed nothing"
    sdk = [line for line in imported if re.search(r"\|\s*anthropic\b", line)]
    assert not sdk, f"`batchpilot {args[0]}` imports the SDK:\n" + "\n".join(sdk[:5])

"""Installs as users make them, from this checkout (which has run the tests: .venv*, .batchpilot/, egg-info):
`pip install .` ships the templates and samples; a plugin install copies the plugin folder only; a plain copy
of the skill folder carries nothing of the checkout's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import ROOT, SKILL_DIR
from test_packaging import offline, tool_env, require_tool

TEMPLATES = {"classify", "code-review", "doc-review", "extract", "security-review", "summarize"}
MAX_INSTALL_BYTES = 3 * 1024 * 1024
CHECKOUT_ONLY = {"tests", "bench", ".git", ".batchpilot", ".pycache", "build", "dist"}


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def foreign_parts(root: Path) -> set[str]:
    """Names in the tree that belong to a checkout, not to an install."""
    names = {part for p in root.rglob("*") for part in p.relative_to(root).parts}
    return {n for n in names if n in CHECKOUT_ONLY or n.startswith(".venv") or n.endswith(".egg-info")}


def test_pip_install_ships_templates_and_samples(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(SKILL_DIR, source / "skills" / SKILL_DIR.name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (tmp_path / "dist").glob("batchpilot-*.whl")
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # pip from this environment installs into the fresh one (--python): the same install, without bootstrapping pip.
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # The dependencies come from this test environment (offline); the package itself only from the wheel.
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    where = subprocess.run([str(python), "-c", "import batchpilot.cli.main as m; print(m.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=60)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    tool = venv / "bin" / "batchpilot"
    listed = subprocess.run([str(tool), "templates", "list"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert {t["name"] for t in json.loads(listed.stdout)["templates"]} == TEMPLATES
    demo = subprocess.run([str(tool), "-q", "demo"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr[-3000:]
    receipt = json.loads(demo.stdout)
    assert receipt["emulated"] is True and receipt["items"] == 8 and Path(receipt["report"]).is_file()
    assert receipt["next"].startswith("batchpilot ")  # a pip install has no shim: the console script on PATH


def test_plugin_install_from_this_checkout_copies_the_plugin_only(tmp_path):
    claude = require_tool("claude")
    home = tmp_path / "home"
    env = tool_env(home)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*offline(), claude, "plugin", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=180, stdin=subprocess.DEVNULL)

    added = cli("marketplace", "add", str(ROOT))
    assert added.returncode == 0, added.stdout + added.stderr
    installed = cli("install", "batch-processing@batch-processing")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    [root] = {p.parent.parent for p in (home / ".claude" / "plugins" / "cache").rglob(".claude-plugin/plugin.json")}
    assert (root / "skills" / "batch-processing" / "SKILL.md").is_file()
    assert (root / "skills" / "batch-processing" / "scripts" / "batchpilot").is_file()
    assert (root / "agents" / "batch-item.md").is_file() and (root / "hooks" / "hooks.json").is_file()
    assert foreign_parts(root) == set()
    assert tree_bytes(root) < MAX_INSTALL_BYTES, tree_bytes(root)


def test_a_plain_copy_of_the_skill_folder_carries_nothing_of_the_checkout(tmp_path):
    copy = tmp_path / "skills" / "batch-processing"
    shutil.copytree(SKILL_DIR, copy)  # `cp -r skills/batch-processing ~/.claude/skills/`
    assert foreign_parts(copy) == set()
    assert tree_bytes(copy) < MAX_INSTALL_BYTES, tree_bytes(copy)


def test_the_wheel_lists_every_package_folder():
    """pyproject.toml lists the packages (the data folders are packages only in the wheel): a new folder must
    be listed, or `pip install .` would ship without it."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.relative_to(SKILL_DIR).parts) for p in (SKILL_DIR / "batchpilot").rglob("*")
               if p.is_dir() and p.name != "__pycache__"} | {"batchpilot"}
    assert folders | {"batchpilot.templates", "batchpilot.samples"} == listed

"""Items from a change: `--items git:REV`, `git:A..B` (or `A...B`) and `git:staged`, one item per changed file.

It runs the user's own `git` (no shell; found on PATH), from the repository's top level, with the settings
that change its output pinned on the command line (prefixes, quoting, colour, external diff drivers,
`diff.relative`), so the parse below holds whatever the user's configuration says:

* `git:REV`    — the working tree against REV (what `git diff REV` shows; untracked files are not part of it);
* `git:A..B`   — commit B against commit A; `git:A...B` — B against the merge base of A and B;
* `git:staged` — the index against HEAD (what `git diff --cached` shows).

Each item's `content` is the whole new side of the file (the working tree, B, or the index), its `path` the
file's path from the repository root (a rename keeps its new path), and its fields carry `diff` (the file's
unified diff, with three lines of context), `changed_lines` (new-side line ranges, e.g. `3-5, 12`), `status`
(`modified`, `added`, `renamed`, `copied`, `type-changed`), `old_path` and `base` (the revision spec). Deleted,
binary, symlink, submodule, unmerged and unreadable files are skipped with a reason, never silently. The item's manifest line
also records `lines` (the new side's length) and `changed` (the ranges as pairs): the merger checks every
finding's line range against them.

Reading is streamed: the combined patch is read one file's section at a time
(`batchpilot.prepare.gitpatch`), and each section's `diff --git` header is checked against the file list
before it is used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Iterator

from batchpilot.core.errors import BatchpilotError
from batchpilot.prepare.gitpatch import read_sections
from batchpilot.prepare.reader import open_regular

GIT_PREFIX = "git:"
STAGED = "staged"
STATUS_WORDS = {"M": "modified", "A": "added", "R": "renamed", "C": "copied", "T": "type-changed", "D": "deleted"}
# Pinned so that a user's diff.noprefix, diff.mnemonicPrefix, color.ui, core.quotePath, diff.relative,
# diff.suppressBlankEmpty (a blank context line without its leading space would shift every line number
# after it) or diff.submodule (a submodule written without a `diff --git` header) cannot change what is
# parsed; `--no-ext-diff --no-textconv` keep drivers from rewriting the patch.
GIT_CONFIG = ["-c", "core.quotepath=off", "-c", "color.ui=never", "-c", "diff.noprefix=false",
              "-c", "diff.mnemonicprefix=false", "-c", "core.safecrlf=false", "-c", "diff.suppressBlankEmpty=false"]
DIFF_FLAGS = ["--no-color", "--no-ext-diff", "--no-textconv", "--no-relative", "--submodule=short", "-M",
              "--src-prefix=a/", "--dst-prefix=b/"]
WORKTREE, INDEX = "worktree", "index"


def is_git_source(src: str) -> bool:
    """True for an items source that names a change (`git:...`)."""
    return src.startswith(GIT_PREFIX)


@dataclass
class Change:
    """One changed file, as `git diff` lists it."""

    status: str
    path: str  # the new path (the old one for a deletion)
    old_path: str | None = None
    binary: bool = False
    added: int = 0
    removed: int = 0
    diff: str | None = ""  # None when longer than the cap
    mode: str = ""  # the new side's git mode: 100644, 100755, 120000 (symlink), 160000 (submodule)
    changed: list[list[int]] = field(default_factory=list)  # new-side [start, end] ranges

    def changed_lines(self) -> str:
        return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.changed)


@dataclass
class Spec:
    """A parsed `git:` source: the `git diff` arguments and where the new side of a file is read from."""

    text: str
    diff_args: list[str]
    new_side: str  # WORKTREE, INDEX, or a revision


def _git() -> str:
    git = shutil.which("git")
    if git is None:
        raise BatchpilotError("--items git:... needs the git command, and none is on PATH",
                              "install git, or pass the changed files as a glob or a list instead")
    return git


def _run(args: list[str], cwd: str | None, binary: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([_git(), *GIT_CONFIG, *args], cwd=cwd, capture_output=True, check=False,
                          text=not binary, **({} if binary else {"encoding": "utf-8", "errors": "replace"}))


def repo_root(cwd: str | None = None) -> str:
    """The top level of the repository the current directory is in, or an Error/Hint outside one."""
    done = _run(["rev-parse", "--show-toplevel"], cwd)
    if done.returncode != 0 or not done.stdout.strip():
        raise BatchpilotError(f"--items git:...: {os.path.abspath(cwd or '.')} is not inside a git repository",
                              "run batchpilot from inside the repository whose changes you want reviewed")
    return done.stdout.strip()


def _check_rev(rev: str, spec: str, top: str) -> None:
    # A revision that starts with `-` would be read by git as an option: refuse it before git sees it.
    if not rev or rev.startswith("-") or _run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], top).returncode:
        # A shallow clone (CI checkouts are, by default) lacks the history a base revision lives in.
        shallow = _run(["rev-parse", "--is-shallow-repository"], top).stdout.strip() == "true"
        raise BatchpilotError(f"--items {spec}: {rev!r} is not a commit in this repository"
                              + (" (a shallow clone)" if shallow else ""),
                              ("fetch the history first: `git fetch --unshallow` (in GitHub Actions, actions/checkout "
                               "with fetch-depth: 0)" if shallow else
                               "use a branch, tag or commit that `git rev-parse` knows, e.g. git:main, git:HEAD~3, "
                               "git:main..HEAD or git:staged (run `git fetch` first if it is a remote branch)"))


def parse_spec(src: str, top: str) -> Spec:
    """`git:REV` / `git:A..B` / `git:A...B` / `git:staged` → the diff arguments, every revision checked."""
    body = src[len(GIT_PREFIX):].strip()
    if not body:
        raise BatchpilotError("--items git: needs a revision",
                              "e.g. --items git:main (changes since main), git:HEAD~1..HEAD or git:staged")
    if body == STAGED:
        return Spec(src, ["--cached"], INDEX)
    for sep in ("...", ".."):
        if sep in body:
            old, new = body.split(sep, 1)
            old, new = old or "HEAD", new or "HEAD"
            _check_rev(old, src, top)
            _check_rev(new, src, top)
            return Spec(src, [f"{old}{sep}{new}"], new)
    _check_rev(body, src, top)
    return Spec(src, [body], WORKTREE)


def _raw(spec: Spec, top: str) -> list[Change]:
    """The changed files from `git diff --raw -z`: status, paths and the new side's mode (symlinks and
    submodules are told apart by mode, never by reading the file)."""
    done = _run(["diff", *DIFF_FLAGS, "-z", "--raw", *spec.diff_args, "--"], top)
    if done.returncode != 0:
        raise BatchpilotError(f"--items {spec.text}: git diff failed: {done.stderr.strip()[:300]}",
                              "check that `git diff` works for this revision in this repository")
    fields = done.stdout.split("\0")
    changes, i = [], 0
    while i < len(fields) and fields[i].startswith(":"):
        meta = fields[i][1:].split(" ")  # old mode, new mode, old id, new id, status (with a score: R100)
        code, mode = meta[4][:1], meta[1]
        if code in "RC":
            changes.append(Change(STATUS_WORDS[code], fields[i + 2], old_path=fields[i + 1], mode=mode))
            i += 3
        else:
            changes.append(Change(STATUS_WORDS.get(code, "unmerged" if code == "U" else "modified"), fields[i + 1], mode=mode))
            i += 2
    numstat = _run(["diff", *DIFF_FLAGS, "-z", "--numstat", *spec.diff_args, "--"], top).stdout.split("\0")
    counts, j = [], 0
    while j < len(numstat) and numstat[j]:
        added, removed, rest = numstat[j].split("\t", 2)
        counts.append((added, removed))
        j += 3 if rest == "" else 1  # a rename's paths follow as two more fields
    for change, (added, removed) in zip(changes, counts):
        change.binary = added == "-"
        change.added, change.removed = (0, 0) if change.binary else (int(added), int(removed))
    return changes


def _expected_header(change: Change) -> str | None:
    """The `diff --git` line git writes for this change, or None when its paths are quoted (then not checked)."""
    paths = [change.old_path or change.path, change.path]
    if any(ch in p for p in paths for ch in '"\\') or any(ord(ch) < 32 or ord(ch) == 127 for p in paths for ch in p):
        return None
    return f"diff --git a/{paths[0]} b/{paths[1]}"


def list_changes(src: str, cwd: str | None = None, max_diff_bytes: int = 1 << 62) -> tuple[str, Spec, Iterator[Change]]:
    """(repository top level, the parsed spec, the changed files with their diffs and new-side ranges).
    A diff longer than `max_diff_bytes` comes with `diff` None (its ranges are still there)."""
    top = repo_root(cwd)
    spec = parse_spec(src, top)
    changes = _raw(spec, top)
    if not changes:
        raise BatchpilotError(f"--items {src}: no file changed",
                              "check the revision (`git diff --stat` with it shows the changes); untracked files "
                              "are not part of a diff until `git add -N` adds them")

    def attach() -> Iterator[Change]:
        sections = read_sections([_git(), *GIT_CONFIG, "diff", *DIFF_FLAGS, "-U3", *spec.diff_args, "--"], top,
                                 max_diff_bytes)
        for change in changes:
            if change.status == "unmerged":  # git writes "* Unmerged path", no section; skipped
                yield change
                continue
            # A type change (a file that became a symlink, ...) is written as a deletion and an addition.
            section = next(sections, None)
            if change.status == "type-changed":
                section = next(sections, None)
            expected = _expected_header(change)
            if section is None or (expected is not None and section.header.rstrip("\n") != expected):
                raise BatchpilotError(f"--items {src}: git diff's patch does not match its file list at {change.path!r}",
                                      "resolve any merge conflict first (`git status`), or pass the files as a glob")
            change.diff, change.changed = section.text, section.changed
            yield change

    return top, spec, attach()


def _in_worktree(top: str, path: str) -> str:
    """The file's path in the working tree; an OSError when it is a symlink or resolves outside the
    repository (a change must never make batchpilot read, and send, a file from elsewhere on the machine)."""
    full = os.path.join(top, path)
    if os.path.islink(full) or os.path.commonpath([os.path.realpath(full), os.path.realpath(top)]) != os.path.realpath(top):
        raise OSError(f"{path} leads outside the repository or is a symlink")
    return full


def read_new_side(top: str, spec: Spec, path: str) -> bytes:
    """The file's bytes on the new side of the change (an OSError when they cannot be read)."""
    if spec.new_side == WORKTREE:
        # The bounded reader's open: a FIFO or device in the worktree is refused, never read or waited on.
        with open_regular(_in_worktree(top, path)) as fh:
            return fh.read()
    ref = f":{path}" if spec.new_side == INDEX else f"{spec.new_side}:{path}"
    done = _run(["cat-file", "blob", ref], top, binary=True)
    if done.returncode != 0:
        raise OSError(f"git cat-file {ref} failed")
    return done.stdout


def new_side_size(top: str, spec: Spec, path: str) -> int:
    """The new side's size in bytes without reading it (-1 when unknown), so oversized files are not loaded."""
    if spec.new_side == WORKTREE:
        try:
            return os.path.getsize(_in_worktree(top, path))
        except OSError:
            return -1
    ref = f":{path}" if spec.new_side == INDEX else f"{spec.new_side}:{path}"
    done = _run(["cat-file", "-s", ref], top)
    return int(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip().isdigit() else -1

"""Change items: the files of a `git:` source (`batchpilot.prepare.gitdiff`) as items, one per changed text file.

A `DiffItem` is a file item whose `kind` is `diff`: its content is the new side of the file, and its fields
carry the diff. Templates render it with their diff variant (`user-diff.md`) when they have one. Its
items.jsonl line adds `lines` (the new side's line count) and `changed` (the new-side ranges the diff
touches), which the merger checks findings against. custom_ids are the file paths' ids
(`batchpilot.prepare.items.file_ids`), so a re-run of the same change gives the same ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator

from batchpilot.prepare.gitdiff import Change, list_changes, new_side_size, read_new_side
from batchpilot.prepare.items import Item, SkipFn, file_ids
from batchpilot.prepare.reader import sniff

DIFF_KIND = "diff"


@dataclass
class DiffItem(Item):
    """A changed file: the new side as content, the change in `fields`, and the line facts for the merger."""

    lines: int = 0
    changed: list[list[int]] = field(default_factory=list)

    def manifest(self) -> dict:
        rec = super().manifest()
        rec["lines"] = self.lines
        rec["changed"] = self.changed
        return rec


def line_count(text: str) -> int:
    """Lines as an editor numbers them: a final line without a newline still counts."""
    return text.count("\n") + (0 if text.endswith("\n") or not text else 1)


def _skip_reason(change: Change) -> tuple[str, str] | None:
    if change.status == "deleted":
        return "deleted", "the change deletes this file"
    if change.status == "unmerged":
        return "unmerged", "the file has a merge conflict"
    if change.mode == "120000":
        return "symlink", "the change makes it a symbolic link; its target is not reviewed"
    if change.mode == "160000":
        return "submodule", "a submodule's commit changed; review it in its own repository"
    if change.binary:
        return "binary", "git diff reports a binary file"
    if not change.changed:
        was = f"renamed from {change.old_path}" if change.old_path else change.status
        return "unchanged", f"{was}, no line changed"
    return None


def _decode(data: bytes, source: str, skip: SkipFn) -> str | None:
    found = sniff(data)  # the one "first bytes, then decide" step, shared with every other item source
    if found:
        skip(source, *found)
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        skip(source, "binary", f"not UTF-8 at byte {exc.start}")
        return None
    if not text.strip():
        skip(source, "empty", "no content")
        return None
    return text


def iter_change_items(src: str, max_bytes: int, skip: SkipFn) -> Iterator[Item]:
    """Yield one DiffItem per changed text file of `src` (`git:...`), in git's order; skip the rest with a reason."""
    top, spec, changes = list_changes(src, max_diff_bytes=max_bytes)
    kept: list[Change] = []
    for change in changes:
        reason = _skip_reason(change)
        if reason:
            skip(change.path, *reason)
        else:
            kept.append(change)
    if not kept:
        return
    for change, cid in zip(kept, file_ids([c.path for c in kept])):
        size = new_side_size(top, spec, change.path)
        if size > max_bytes:
            skip(change.path, "oversized", f"{size} bytes > {max_bytes}")
            continue
        if change.diff is None:
            skip(change.path, "oversized", f"its diff is longer than {max_bytes} bytes")
            continue
        try:
            data = read_new_side(top, spec, change.path)
        except OSError as exc:
            skip(change.path, "unreadable", getattr(exc, "strerror", None) or str(exc))
            continue
        text = _decode(data, change.path, skip)
        if text is None:
            continue
        fields = {"name": os.path.basename(change.path), "ext": os.path.splitext(change.path)[1].lstrip("."),
                  "status": change.status, "base": spec.text, "diff": change.diff,
                  "changed_lines": change.changed_lines(), "added": change.added, "removed": change.removed}
        if change.old_path:
            fields["old_path"] = change.old_path
        yield DiffItem(custom_id=cid, source=change.path, content=text, kind=DIFF_KIND, path=change.path,
                       fields=fields, lines=line_count(text), changed=change.changed)

"""Crash-safe file primitives: atomic writes, fsynced appends, and streaming JSONL reads.

Every file the tool owns is either written whole through `atomic_write` (temp file + fsync + rename, so a
reader sees the old or the new file, never half of one) or appended through `append_jsonl` (flushed and
fsynced before returning, so a record that was reported written survives a kill -9).
"""

from __future__ import annotations

import glob
import json
import os
import re
import tempfile
from pathlib import Path
from contextlib import contextmanager
from typing import IO, Any, Iterable, Iterator

from batchpilot.core import crash
from batchpilot.core.errors import BatchpilotError


class JsonProblem(ValueError):
    """A JSON text `parse_json` refused; `str()` says why in words (with line and column when known)."""


def _refuse_constant(name: str) -> Any:
    raise JsonProblem(f"{name} is not a JSON number")


# A \uD800-\uDFFF escape: JSON's grammar allows it alone, but a lone one is no Unicode character and could
# never be written to UTF-8 again (a traceback at the first write). Pairs (emoji) decode to one character.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_B = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_lone_surrogates(text: str | bytes, value: Any) -> None:
    pattern = _SURROGATE_ESCAPE_B if isinstance(text, (bytes, bytearray)) else _SURROGATE_ESCAPE
    if not pattern.search(text):
        return  # the common case costs one scan, no re-encoding
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JsonProblem(f"a lone surrogate escape \\u{ord(exc.object[exc.start]):04x} is not a Unicode character") from None


def parse_json(text: str | bytes) -> Any:
    """Standard JSON only: `NaN`/`Infinity` and lone surrogate escapes refused, and too-deep nesting or a number too long to convert
    (Python raises RecursionError / a bare ValueError for those) become a `JsonProblem` naming the cause."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
        _refuse_lone_surrogates(text, value)
        return value
    except JsonProblem:
        raise
    except json.JSONDecodeError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if exc.lineno > 1 else f" at column {exc.colno}"
        raise JsonProblem(exc.msg + where) from None
    except RecursionError:
        raise JsonProblem("nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise JsonProblem(str(exc).split(";")[0]) from None


LINK_HINT = "remove the link (a run directory holds its own files, never links): writes must stay inside the run"


def safe_join(root: Path, *parts: str) -> Path:
    """`root/parts...`, refused when any existing part below `root` is a symbolic link or climbs out with `..`:
    the one join for a path the tool writes inside a run directory, so no write can land outside it."""
    root = Path(root)
    path = root
    for part in parts:
        if part in ("", ".", "..") or "/" in part or os.sep in part:
            raise BatchpilotError(f"{part!r} is not a plain name inside {root}", "report this as a bug")
        path = path / part
        if path.is_symlink():
            raise link_error(path)
    return path


def link_error(path: Path | str) -> BatchpilotError:
    kind = "directory" if os.path.isdir(path) else "file"
    return BatchpilotError(f"{path} is not a plain {kind}: it is a symbolic link", LINK_HINT)


def safe_dir(root: Path, name: str) -> Path:
    """The subfolder `name` of the run directory `root`, created when missing; refused when it is a link or
    not a directory."""
    path = safe_join(root, name)
    if path.exists() and not path.is_dir():
        raise BatchpilotError(f"{path} is not a directory", f"remove it; batchpilot creates {name}/ itself")
    path.mkdir(exist_ok=True)
    return path


def refuse_links(root: Path, drop_zones: tuple[str, ...] = ()) -> None:
    """Refuse a run directory that holds a symbolic link anywhere below it (a link in `prompts/` or a linked
    `results.jsonl` would make the tool write outside the run). Reads directory entries only, no file. The
    contents of the `drop_zones` folders (where other programs drop files, each read with its own checks
    that ignore links) are not scanned; the folders themselves are."""
    skip = {Path(root) / name for name in drop_zones}
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # unreadable: the command that needs it reports it
        for entry in entries:
            if entry.is_symlink():
                raise link_error(entry.path)
            if entry.is_dir(follow_symlinks=False) and Path(entry.path) not in skip:
                stack.append(Path(entry.path))


def damaged(where: str, why: str) -> BatchpilotError:
    """The error for a bad line or field in a file of the run directory (`where` names file and line)."""
    name = where.split(" ")[0]
    return BatchpilotError(f"{where}: {why}",
                           f"the run directory was edited or damaged; restore {name} or start a new run")


def dumps(record: Any) -> str:
    """One compact JSON line (no newline), UTF-8 kept readable."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """Attach `path` to an OSError that lacks one (a write on a full disk names no file), so the error the
    user sees says which file could not be written."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (one of another user counts as alive: not ours to judge)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_temps(path: Path) -> int:
    """Remove the temp files `atomic_stream` left for `path` in processes that were killed (their pid, which
    the temp name carries, is gone); return how many. A large merge killed midway leaves one of its size."""
    path = Path(path)
    removed = 0
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = stale.name[len(path.name) + 2:].partition(".")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            try:
                stale.unlink()
                removed += 1
            except OSError:
                pass  # gone already, or not ours to remove
    return removed


@contextmanager
def atomic_stream(path: Path, binary: bool = False, sweep: bool = False) -> Iterator[IO]:
    """A file written bit by bit that appears at `path` only when complete (same-directory temp file, fsync,
    rename); on any error the temp file is removed and `path` keeps its old content. The temp name carries
    the pid, so `sweep=True` (the writers of large files: merge, exports, report) first removes the temp files
    of killed earlier writers of `path`."""
    path = Path(path)
    with naming(path):
        if sweep:
            remove_stale_temps(path)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        except OSError as exc:
            exc.filename = str(path)  # the user knows the file, not our temp name
            raise
    try:
        with naming(path), (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        with naming(path):
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data` atomically."""
    with atomic_stream(path, binary=True) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)


def atomic_write_json(path: Path, value: Any) -> None:
    """Write a JSON document (indent 2) atomically."""
    atomic_write(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line that lacks its newline: a kill -9 mid-append left it, and it was never reported written."""
    try:
        with open(path, "rb+") as fh:
            end = fh.seek(0, os.SEEK_END)
            if end == 0:
                return
            fh.seek(end - 1)
            if fh.read(1) == b"\n":
                return
            # Walk back in blocks to the last complete line.
            pos = end
            while pos > 0:
                step = min(65536, pos)
                pos -= step
                fh.seek(pos)
                block = fh.read(step)
                cut = block.rfind(b"\n")
                if cut >= 0:
                    fh.truncate(pos + cut + 1)
                    return
            fh.truncate(0)
    except FileNotFoundError:
        return


def append_jsonl(path: Path, records: Iterable[Any]) -> None:
    """Append records as JSON lines, then flush and fsync before returning.

    A torn last line left by an earlier kill is cut first, so the new records start on a line of their own.
    """
    if Path(path).is_symlink():
        raise link_error(path)
    with naming(path):
        _cut_torn_tail(Path(path))
        # O_NOFOLLOW: an append never goes through a link to a file outside the run directory.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with open(fd, "a", encoding="utf-8") as fh:
            for record in records:
                fh.write(dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    crash.appended(Path(path).name)


def iter_jsonl(path: Path, tolerate_torn_tail: bool = True, require: tuple[str, ...] = ()) -> Iterator[dict]:
    """Stream the JSON objects of a JSONL file.

    A last line without its newline is what a kill -9 mid-append leaves: it is skipped when
    `tolerate_torn_tail` (the record was never reported written). Any other bad line is an error naming it,
    as is a record whose `require`d keys are missing or not strings (e.g. `custom_id`).
    """
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                if not raw.endswith(b"\n") and tolerate_torn_tail:
                    return  # a torn tail can split a multi-byte character
                raise damaged(f"{path.name} line {number}", "not UTF-8 text") from None
            if not line.endswith("\n") and tolerate_torn_tail:
                try:
                    parse_json(line)
                except ValueError:
                    return
            if not line.strip():
                continue
            try:
                record = parse_json(line)
            except ValueError as exc:
                raise damaged(f"{path.name} line {number}", f"not valid JSON ({exc})") from None
            if not isinstance(record, dict):
                raise damaged(f"{path.name} line {number}", "expected a JSON object")
            for key in require:
                if not isinstance(record.get(key), str):
                    raise damaged(f"{path.name} line {number}", f"no {key} (a string) in this record")
            yield record


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file, with an Error/Hint naming it when it is missing or malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BatchpilotError(f"{what} not found: {path}", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchpilotError(f"cannot read {what} {path}: {exc}", "check the file's permissions and encoding") from None
    try:
        return parse_json(text)
    except ValueError as exc:
        raise BatchpilotError(
            f"{path}: not valid JSON: {exc}",
            f"fix the JSON in {path.name}",
        ) from None

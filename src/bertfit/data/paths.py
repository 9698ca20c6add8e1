"""Outputs never replace inputs: every path bertfit writes that the user named is checked against what it reads.

Paths are compared by what they point at, not by how they are spelled: `./x`, `a/../x`, a symlink and a hard link
to an input all count as that input (files and folders are compared by device and inode where they exist).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bertfit.errors import DataError, ModelError

SIDE_MARK = ".bertfit-"  # bertfit's work folders beside an output are named .NAME.bertfit-parts, -work, ...


def check_not_input(
    output: str | Path,
    inputs: Iterable[object],
    what: str = "output path",
    writes: Sequence[str] | None = None,
) -> None:
    """Refuse, before any work, an output that would write over something the same call reads.

    Refused: an output that is an input file or folder (or resolves to one), that lies inside an input folder, or
    whose hidden work folders beside it (`.NAME.bertfit-*`) are or hold an input. When `writes` is None the output
    replaces whatever is at its path (a file, a folder of shards, a model folder), so a folder that holds an input
    is refused too; with `writes` (a folder written into, like a report folder) only those file names in it count.

    Args:
        output: the path the user named.
        inputs: paths the call reads (files or folders); None, missing paths and in-memory tables are skipped.
        what: the output's name in the message, e.g. "--output folder".
    """
    output = Path(output)
    for source in _paths(inputs):
        problem = _overlap(output, source, "folder" if source.is_dir() else "file", writes)
        if problem:
            raise DataError(f"{output}: {problem}; choose another {what}")


def require_model_folder(model_dir: str | Path) -> Path:
    """The folder as a Path, or a one-line error when it is missing or holds no config.json: the checks that need
    neither torch nor transformers, so that the command line gives them at once (modeling.require_model_dir adds
    the checks of the weights and config)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: model folder not found; train one with 'bertfit train'")
    if not (model_dir / "config.json").is_file():
        raise ModelError(
            f"{model_dir}: not a model folder (no config.json); pass the --output folder of 'bertfit train'"
        )
    return model_dir


def model_files(model_dir: str | Path | None) -> list[Path]:
    """Every file of a model folder (weights, configs, tokenizer, bertfit's reports): none may be written over.

    The folder itself is not an input as a whole: new files may go inside it (an evaluation report, say). The work
    files of a run writing into it (`.NAME.bertfit-lock`, `-parts`, ...) are not the model's."""
    if model_dir is None or not Path(model_dir).is_dir():
        return []
    folder = Path(model_dir)
    return [p for p in folder.rglob("*") if p.is_file() and not _is_side_path(p.relative_to(folder))]


def _is_side_path(path: Path) -> bool:
    return any(part.startswith(".") and SIDE_MARK in part for part in path.parts)


def _paths(inputs: Iterable[object]) -> Iterator[Path]:
    for item in inputs:
        if isinstance(item, (str, os.PathLike)) and os.path.lexists(item):
            yield Path(item)


def _overlap(output: Path, source: Path, kind: str, writes: Sequence[str] | None) -> str | None:
    """How writing `output` would touch `source`, in words; None when it would not."""
    if _same(output, source):
        return f"the output would overwrite the input {kind} {source}"
    if _under(output, source):
        return f"the output would be written inside the input folder {source}"
    if writes is None and _under(source, output):
        return f"the output folder holds the input {kind} {source}, which writing the output would replace"
    for name in writes or ():
        if _same(output / name, source):
            return f"the output would overwrite the input {kind} {source} (it writes {name} there)"
    side = _side_folder(output, source)
    if side is not None:
        return f"bertfit's work folder beside the output ({side}) would overwrite the input {kind} {source}"
    return None


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _under(path: Path, folder: Path) -> bool:
    """True when `path` lies beneath `folder` (strictly), however either is spelled."""
    try:
        target = folder.stat()
    except OSError:
        return False
    if not stat.S_ISDIR(target.st_mode):
        return False
    return any(_same_stat(parent, target) for parent in _resolved(path).parents)


def _side_folder(output: Path, source: Path) -> Path | None:
    """The `.NAME.bertfit-*` folder beside `output` that is, or holds, `source`."""
    prefix = f".{output.name}{SIDE_MARK}"
    try:
        beside = output.absolute().parent.stat()
    except OSError:
        return None
    resolved = _resolved(source)
    for path in (resolved, *resolved.parents):
        if path.name.startswith(prefix) and _same_stat(path.parent, beside):
            return output.parent / path.name
    return None


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return path.absolute()


def _same_stat(path: Path, target: os.stat_result) -> bool:
    try:
        return os.path.samestat(path.stat(), target)
    except OSError:
        return False


def input_fingerprint(files: list[Path]) -> list[dict[str, Any]]:
    """What identifies an input for resuming: each file's path, size and modification time."""
    return [{"path": str(f.resolve()), "size": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files]

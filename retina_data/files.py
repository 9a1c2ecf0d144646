"""Safe outputs: atomic writes and run folders that never silently overwrite results.

Every result file is written under a temporary name in its destination folder and
renamed into place, so an interrupted run leaves either the old file or the new one,
never half of one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from retina_data.errors import OutputExistsError


def _split_suffix(path: Path) -> tuple[str, str]:
    """``("oct_flat_od", ".nii.gz")`` for ``oct_flat_od.nii.gz``: keeps double suffixes."""
    name = path.name
    for double in (".nii.gz", ".tar.gz"):
        if name.endswith(double):
            return name[: -len(double)], double
    return path.stem, path.suffix


def refuse_existing(path: str | Path, overwrite: bool) -> Path:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is false."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists; pass --overwrite to replace it")
    return path


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (``mkstemp`` gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def previous_path(path: str | Path) -> Path:
    """Where :func:`atomic_path` with ``keep_previous`` keeps the file it replaces:
    ``last.prev.pt`` beside ``last.pt``, ``last.prev.ckpt`` beside ``last.ckpt``."""
    path = Path(path)
    stem, suffix = _split_suffix(path)
    return path.with_name(f"{stem}.prev{suffix}")


def _keep_as_previous(path: Path) -> None:
    """Make ``previous_path(path)`` a copy of ``path`` (a hard link where the file system has them),
    replaced atomically, while ``path`` itself stays in place."""
    previous = previous_path(path)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{previous.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copy2(path, tmp)
        os.replace(tmp, previous)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True, keep_previous: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); rename it into place on success.

    The temporary file is removed if the block raises, so a failed write leaves the old
    ``path`` as it was. With ``keep_previous`` the file being replaced also stays as
    :func:`previous_path` (checkpoint rotation: ``last.pt`` and the one before it,
    ``last.prev.pt``), so a new file that turns out bad still has its predecessor beside it.
    """
    path = refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem, suffix = _split_suffix(path)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _new_file_mode())
        if keep_previous and path.is_file():
            _keep_as_previous(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_save(
    path: str | Path, writer: Callable[[Path], object], *, overwrite: bool = True, keep_previous: bool = False
) -> Path:
    """Call ``writer(tmp_path)`` and rename the result to ``path`` (``keep_previous``: see :func:`atomic_path`)."""
    with atomic_path(path, overwrite=overwrite, keep_previous=keep_previous) as tmp:
        writer(tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    """Write a text file atomically."""
    return atomic_save(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)


def atomic_write_bytes(path: str | Path, data: bytes, *, overwrite: bool = True) -> Path:
    """Write a binary file atomically."""
    return atomic_save(path, lambda tmp: tmp.write_bytes(data), overwrite=overwrite)


@contextlib.contextmanager
def staged_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success its files move into ``target``.

    A command that writes many files into a folder writes them here first, so a failure or
    an interruption on the way leaves ``target`` as it was (and nothing that blocks a rerun):
    a new ``target`` is the temporary folder renamed; into an existing one the files are
    moved one by one at the end (replacing files of the same names, leaving the others).
    The temporary folder is removed in any case.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise OutputExistsError(f"{target}: exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield staging
        if not target.exists():
            os.replace(staging, target)
            return
        for source in sorted(p for p in staging.rglob("*") if p.is_file()):
            destination = target / source.relative_to(staging)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_run_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False, resumable: bool = True) -> Path:
    """Refuse a run folder that already holds results, without creating anything.

    A folder that exists and is not empty is accepted only with ``resume`` (continue the
    run in it) or ``overwrite`` (write new results over it); the refusal offers
    ``--resume`` only for commands that have it (``resumable``).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        offer = " or --resume to continue the run" if resumable else ""
        raise OutputExistsError(f"{path}: output folder already holds results; pass --overwrite to replace them{offer}")
    return path


def prepare_run_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False, resumable: bool = True) -> Path:
    """Create a run folder, refusing one that already holds results (see :func:`check_run_dir`)."""
    path = check_run_dir(path, overwrite=overwrite, resume=resume, resumable=resumable)
    path.mkdir(parents=True, exist_ok=True)
    return path

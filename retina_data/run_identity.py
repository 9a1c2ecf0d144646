"""What determines a run's result, recorded in its folder, so that ``--resume`` continues only that run.

A run folder holds ``run_identity.json``::

    {"script": "train_test_geninr",
     "config": {"SETTINGS.FOLD": 0, "TRAINING.LEARNING_RATE": 0.0001, ...},
     "eyes": {"train": ["sub001_OD", ...], "test": ["sub003_OD", ...]},
     "files": {"sub001/OD/oct_flat_od.nii.gz": [size_bytes, mtime_ns], ...}}

``config`` is the resolved config flattened to dotted keys, without the keys the caller
names as free (presentation and speed: progress bars, figures, compilation, micro-batch
sizes: they change how a run looks or how fast it goes, not what it computes). ``eyes``
are the eye ids of each role in the order the run uses them; ``files`` the size and
modification time of every data file the run read, relative to the data folder (cheap to
take, and changed by any re-export or edit of a file).

:func:`check_resume` compares the record with the run a ``--resume`` command describes and
refuses any difference with one line that names every differing key::

    error: RUN: --resume with a different run: SETTINGS.FOLD (was 0, now 1), TRAINING.LEARNING_RATE (was 0.001, now 0.01)

Both trees use it: the caller builds a :class:`RunIdentity` from its own config, free keys,
eyes and files, writes it when a run starts (:func:`write_run_identity`) and checks it
before a resume restores anything (nothing is written before the check passes).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retina_data.errors import ConfigError, DataError
from retina_data.files import atomic_write_text

IDENTITY_FILE = "run_identity.json"
SHOWN_DIFFERENCES = 8
"""Differences listed in the refusal; more are counted (``and N more``)."""
SHOWN_VALUE_CHARS = 60
"""Longer lists and mappings are cut in the refusal."""


def flatten_config(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"A": {"B": 1}}`` as ``{"A.B": 1}``; lists and other values are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _is_free(key: str, free_keys: Iterable[str]) -> bool:
    return any(key == free or key.startswith(free + ".") for free in free_keys)


def file_fingerprints(paths: Iterable[Path], root: Path) -> dict[str, list[int]]:
    """``{path relative to root (or absolute outside it): [size in bytes, mtime in ns]}`` of existing files."""
    root = Path(root).resolve()
    prints: dict[str, list[int]] = {}
    for path in paths:
        resolved = Path(path).resolve()
        if not resolved.is_file():
            continue
        name = str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)
        stat = resolved.stat()
        prints[name] = [stat.st_size, stat.st_mtime_ns]
    return dict(sorted(prints.items()))


def _as_json(value: Any) -> Any:
    """The value as it reads back from JSON (tuples become lists), so a record compares equal to itself."""
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class RunIdentity:
    """What determines a run's result (see the module doc). ``None`` parts are unknown and not compared."""

    script: str | None
    config: dict[str, Any] | None
    eyes: dict[str, list[str]] | None = None
    files: dict[str, list[int]] | None = field(default=None)

    @classmethod
    def of(
        cls,
        script: str,
        config: Mapping[str, Any],
        free_keys: Iterable[str],
        eyes: Mapping[str, list[str]],
        files: Iterable[Path],
        data_root: Path,
    ) -> RunIdentity:
        """The identity of a run of ``script`` with the resolved ``config`` (a nested mapping),
        leaving out ``free_keys`` (dotted; a section name frees all its keys)."""
        free = list(free_keys)
        flat = {key: value for key, value in flatten_config(config).items() if not _is_free(key, free)}
        return cls(
            script,
            _as_json(flat),
            _as_json({role: list(ids) for role, ids in eyes.items()}),
            file_fingerprints(files, data_root),
        )

    def to_json(self) -> str:
        return (
            json.dumps({"script": self.script, "config": self.config, "eyes": self.eyes, "files": self.files}, indent=1)
            + "\n"
        )

    @classmethod
    def from_json(cls, text: str, where: Path) -> RunIdentity:
        """Parse a record written by :meth:`to_json`; anything else raises :class:`DataError`."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{where}: cannot read the run record (not JSON: {exc})") from exc
        expected = {"script": str, "config": dict, "eyes": dict, "files": dict}
        if not isinstance(data, dict) or any(
            key in data and data[key] is not None and not isinstance(data[key], kind) for key, kind in expected.items()
        ):
            raise DataError(
                f"{where}: cannot read the run record; expected a mapping of "
                f"{', '.join(expected)} as written by this toolkit"
            )
        return cls(data.get("script"), data.get("config"), data.get("eyes"), data.get("files"))

    def differences(self, now: RunIdentity) -> list[str]:
        """``KEY (was A, now B)`` for every part that differs between this record and ``now``."""
        found: list[str] = []
        if self.script is not None and now.script is not None and self.script != now.script:
            found.append(f"script (was {self.script}, now {now.script})")
        if self.config is not None and now.config is not None:
            found += _mapping_differences(self.config, now.config, "")
        if self.eyes is not None and now.eyes is not None:
            found += _mapping_differences(self.eyes, now.eyes, "eyes.")
        if self.files is not None and now.files is not None:
            found += _mapping_differences(self.files, now.files, "data file ", show=_show_file)
        return found


def _show(value: Any) -> str:
    """A value as JSON; long lists and mappings are cut (texts such as paths are shown whole)."""
    text = "absent" if value is _ABSENT else json.dumps(value, default=str)
    if isinstance(value, str) or len(text) <= SHOWN_VALUE_CHARS:
        return text
    return text[: SHOWN_VALUE_CHARS - 3] + "..."


def _show_file(value: Any) -> str:
    if value is _ABSENT:
        return "absent"
    size, mtime_ns = value
    stamp = datetime.datetime.fromtimestamp(mtime_ns / 1e9).isoformat(sep=" ", timespec="seconds")
    return f"{size} bytes of {stamp}"


_ABSENT = object()


def _mapping_differences(was: Mapping[str, Any], now: Mapping[str, Any], prefix: str, show=_show) -> list[str]:
    return [
        f"{prefix}{key} (was {show(was.get(key, _ABSENT))}, now {show(now.get(key, _ABSENT))})"
        for key in sorted(set(was) | set(now))
        if was.get(key, _ABSENT) != now.get(key, _ABSENT)
    ]


def write_run_identity(run_dir: str | Path, identity: RunIdentity) -> Path:
    """Write ``run_dir/run_identity.json`` (atomically)."""
    return atomic_write_text(Path(run_dir) / IDENTITY_FILE, identity.to_json())


def read_run_identity(run_dir: str | Path) -> RunIdentity | None:
    """The record of ``run_dir`` (``None`` for a folder without one, e.g. of an older version)."""
    path = Path(run_dir) / IDENTITY_FILE
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: cannot read the run record (not text: {exc})") from exc
    return RunIdentity.from_json(text, path)


def resume_refusal(run_dir: str | Path, differences: list[str]) -> str:
    """The one-line refusal: ``RUN: --resume with a different run: KEY (was A, now B), ...``."""
    shown = ", ".join(differences[:SHOWN_DIFFERENCES])
    more = f", and {len(differences) - SHOWN_DIFFERENCES} more" if len(differences) > SHOWN_DIFFERENCES else ""
    return (
        f"{run_dir}: --resume with a different run: {shown}{more}; run the original command again with "
        "--resume, or start a new run (another --output, or --overwrite to replace this one)"
    )


def check_resume(run_dir: str | Path, recorded: RunIdentity | None, now: RunIdentity) -> None:
    """Refuse (:class:`ConfigError`, the one line of :func:`resume_refusal`) a resume whose run
    differs from the one recorded; a folder without a record is left to the caller."""
    if recorded is None:
        return
    differences = recorded.differences(now)
    if differences:
        raise ConfigError(resume_refusal(run_dir, differences))


RUN_CONFIG_FILE = "config.yaml"
"""The resolved config both trees save in a run folder."""


def check_unseen_test_eyes(
    trained_run: str | Path, test_eyes: Iterable[str], data_dir_key: str, data_dir: str | Path, where: str
) -> None:
    """Refuse to evaluate a trained run on eyes it was trained on (another ``SETTINGS.FOLD`` of the
    same data folder), as its ``run_identity.json`` records them; a run without a record, or
    evaluated on another data folder (``data_dir_key`` of the record), is not checked.

    Raises:
        DataError: ``<where>: test eye(s) ... are training eyes of the run in RUN ...``.
    """
    recorded = read_run_identity(trained_run)
    if recorded is None or not recorded.eyes or not recorded.config:
        return
    if recorded.config.get(data_dir_key) != str(Path(data_dir).resolve()):
        return
    seen = sorted(set(recorded.eyes.get("train", [])) & set(test_eyes))
    if seen:
        shown = ", ".join(seen[:SHOWN_DIFFERENCES]) + (", ..." if len(seen) > SHOWN_DIFFERENCES else "")
        raise DataError(
            f"{where}: test eye(s) {shown} are training eyes of the run in {trained_run} "
            f"({IDENTITY_FILE}); evaluate it on the fold it was trained for, or on other data"
        )


def resume_identities(
    run_dir: str | Path,
    identity: RunIdentity,
    from_saved_config: Callable[[Path, RunIdentity], tuple[RunIdentity, RunIdentity]],
) -> tuple[RunIdentity, RunIdentity] | None:
    """What a ``--resume`` compares, ``(recorded, now)``; ``None`` when ``run_dir`` is empty or new
    (the run starts from the beginning, with a notice). The record is the run's
    ``run_identity.json``; a folder of an older version without one is compared through
    ``from_saved_config(its config.yaml, identity)``; a folder with neither is refused."""
    from retina_data.commandline import notice

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        notice(f"{run_dir}: nothing to resume; the run starts from the beginning")
        return None
    recorded = read_run_identity(run_dir)
    if recorded is not None:
        return recorded, identity
    saved = run_dir / RUN_CONFIG_FILE
    if not saved.is_file():
        raise DataError(
            f"{run_dir}: --resume: neither {IDENTITY_FILE} nor {RUN_CONFIG_FILE} is there, so this is "
            "not a run folder of this script (or not a whole one); pass --overwrite to start again"
        )
    return from_saved_config(saved, identity)

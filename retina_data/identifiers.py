"""Subject and eye ids that become folder and file names.

An id names a folder of the data tree (``<subject>/<OD|OS>/``), a run's per-eye outputs
(``metrics/<subject>_<OD|OS>.csv``, ``predictions/...``) and rows of the result tables, so it
must be a single, visible path component: not empty, no path separator, not ``.`` or ``..``,
no leading dot (a hidden folder that listings skip), no control characters, and no leading
or trailing blanks. Every reader of ids (the ``Eye`` record, fold files, containers,
importers) goes through :func:`check_id`, so no id from a file or a command line can write
outside the folder it was meant for.
"""

from __future__ import annotations

from retina_data.errors import DataError

SEPARATORS = ("/", "\\")


def id_problem(value: object) -> str | None:
    """Why ``value`` is not a usable id (``None`` when it is)."""
    if not isinstance(value, str):
        return f"expected a text id, got {type(value).__name__}"
    if not value:
        return "expected a non-empty id"
    if value in (".", ".."):
        return "'.' and '..' are not ids"
    if any(separator in value for separator in SEPARATORS):
        return "expected a single folder name without '/' or '\\'"
    if value.startswith("."):
        return "expected an id that does not start with '.' (a hidden folder)"
    if value != value.strip():
        return "expected an id without leading or trailing blanks"
    if any(ord(character) < 32 or ord(character) == 127 for character in value):
        return "expected an id without control characters"
    return None


def check_id(value: object, where: str) -> str:
    """``value`` when it is a usable id, else :class:`DataError` ``"<where> = <value>: <why>"``."""
    problem = id_problem(value)
    if problem is not None:
        raise DataError(f"{where} = {value!r}: {problem}")
    assert isinstance(value, str)
    return value

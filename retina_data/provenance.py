"""Run records: what was run, with which software, on which device, from which commit."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from retina_data.files import atomic_write_text

TRACKED_PACKAGES = (
    "torch",
    "numpy",
    "scipy",
    "SimpleITK",
    "nibabel",
    "scikit-image",
    "monai",
    "lightning",
    "ruamel.yaml",
    "eyepy",
    "lpips",
)


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package, ``None`` where it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(start: Path | None = None) -> str | None:
    """Commit hash of the checkout holding this package (with ``+dirty``), if any."""
    where = start or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def run_record(device: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to tell later how a result was made."""
    record: dict[str, Any] = {
        "command_line": [sys.executable, *sys.argv],
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
        "git_commit": git_commit(),
        "packages": package_versions(),
    }
    record.update(extra or {})
    return record


def write_run_record(
    run_dir: str | Path, device: str, extra: dict[str, Any] | None = None, name: str = "run_info.json"
) -> Path:
    """Write :func:`run_record` as JSON into the run folder (atomically)."""
    text = json.dumps(run_record(device, extra), indent=2, default=str)
    return atomic_write_text(Path(run_dir) / name, text + "\n")

"""Every entry script is also a console script of the installed package, with the same command line."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SCRIPTS = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
ENTRY_MODULES = [
    "anisotropic_interpolation.train_test_geninr",
    "anisotropic_interpolation.train_test_singleinr",
    "anisotropic_interpolation.predict",
    "anisotropic_interpolation.densify_cohort",
    "atlas_registration.GINR_Atlas_base",
    "atlas_registration.GINR_Atlas_base_inference",
    "atlas_registration.GINR_Atlas_resolution_inference",
    "atlas_registration.pretrain_atlas",
]


def test_every_entry_module_has_a_console_script_that_runs_its_main():
    targets = [value.split(":") for value in SCRIPTS.values()]
    assert len(SCRIPTS) == len(ENTRY_MODULES) + 1  # and retina-data
    for module, function in targets:
        assert callable(getattr(import_module(module), function))
    source = "".join(Path(import_module(m).__file__).read_text() for m in {m for m, _ in targets})
    for entry in ENTRY_MODULES:
        assert f'_run("{entry.rsplit(".", 1)[1]}")' in source, entry


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_console_script_answers_help_with_exit_0(name):
    module, function = SCRIPTS[name].split(":")
    code = f"import sys; sys.argv = ['{name}', '--help']; from {module} import {function}; {function}()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")

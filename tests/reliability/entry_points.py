"""Running entry points as processes, and tiny configs of both trees on the tiny phantom.

Every entry point is run the way a user runs it: ``python path/to/script.py ...`` from the
repository root, in its own process, on one CPU thread, without a GPU. The bad-input table
uses a :class:`Launcher` (a forked child per case of a process that imported the entry
modules once); the end-to-end runs start fresh interpreters.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retina_data.config import read_yaml
from retina_data.folds import FOLDS_FILE
from retina_data.phantom import PhantomConfig

REPO = Path(__file__).resolve().parents[2]
PHANTOM = PhantomConfig(n_subjects=3, shape=(32, 24, 16))
"""Three subjects (six eyes) ``[H, W, D] = [32, 24, 16]``; fold 0 trains on two, tests on one."""

SCRIPTS = {
    "geninr": "anisotropic_interpolation/train_test_geninr.py",
    "singleinr": "anisotropic_interpolation/train_test_singleinr.py",
    "predict": "anisotropic_interpolation/predict.py",
    "densify": "anisotropic_interpolation/densify_cohort.py",
    "atlas": "atlas_registration/GINR_Atlas_base.py",
    "atlas_inference": "atlas_registration/GINR_Atlas_base_inference.py",
    "atlas_resolution": "atlas_registration/GINR_Atlas_resolution_inference.py",
    "pretrain_atlas": "atlas_registration/pretrain_atlas.py",
}


def child_env() -> dict[str, str]:
    """The environment of an entry-point process: one thread, no GPU, unbuffered output."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    env.pop("PYTHONWARNINGS", None)
    return env


def run_entry(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``python argv...`` from the repository root; returns the finished process (text output)."""
    return subprocess.run(
        [sys.executable, *argv], cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


class Launcher:
    """A :mod:`launcher` server: runs command lines of preloaded entry points in forked processes."""

    def __init__(self, preload: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("launcher.py")), *preload],
            cwd=REPO,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: list[str], folder: Path, timeout: float = 120) -> subprocess.CompletedProcess:
        """Like :func:`run_entry`; stdout and stderr are kept in ``folder``."""
        out, err = folder / "stdout.txt", folder / "stderr.txt"
        request = {"argv": argv, "cwd": str(REPO), "stdout": str(out), "stderr": str(err)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise AssertionError(f"no answer within {timeout} s for {argv}")
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the launcher died running {argv}")
        return subprocess.CompletedProcess(argv, json.loads(line)["returncode"], out.read_text(), err.read_text())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.kill()
        self.process.wait()


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default. A child inherits an ignored SIGINT,
    and Python then never turns Ctrl-C into KeyboardInterrupt; the test worker's SIGINT is
    ignored after any in-process Lightning fit that was interrupted (Lightning sets SIG_IGN),
    which made the Ctrl-C test depend on which tests the worker had run before."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_entry(argv: list[str], log: Path) -> subprocess.Popen:
    """Start ``python argv...`` in the background with SIGINT at its default; stdout and stderr go to ``log``."""
    handle = log.open("w")
    return subprocess.Popen(
        [sys.executable, *argv],
        cwd=REPO,
        env=child_env(),
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_default_sigint,  # noqa: PLW1509 -- the child needs SIGINT at its default even where the harness ignores it
    )


def wait_for(
    predicate: Callable[[], bool], process: subprocess.Popen, timeout: float = 240, poll: float = 0.05
) -> None:
    """Poll until ``predicate()`` holds; fails if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before the awaited state")
        if time.monotonic() > deadline:
            process.send_signal(signal.SIGKILL)
            raise AssertionError("timed out waiting for the run")
        time.sleep(poll)


def snapshot(folder: Path) -> dict[str, int] | None:
    """``{relative path: mtime_ns}`` of every file under ``folder``; ``None`` if it does not exist."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def interpolation_config(kind: str, data_dir: Path, result_dir: Path, epochs: int = 2) -> dict[str, Any]:
    """``configs/interpolation/demo_<kind>.yaml`` made tiny: small network, few points, no figures."""
    data = read_yaml(REPO / "configs" / "interpolation" / f"demo_{kind}.yaml")
    data["SETTINGS"].update(RESULT_DIR=str(result_dir), IMG_DIR=str(data_dir), FOLD=0)
    data["TRAINING"].update(
        TOTAL_EPOCHS=epochs, EPOCHS_TIL_SUMMARY=1, BATCH_POINTS=256, STEPS_PER_EPOCH=2, CHECKPOINT_EVERY=1
    )
    data["TRAINING"]["LATENT_CODE"]["SIZE"] = 8 if kind == "geninr" else 0
    data["MODEL"].update(NUM_LAYERS=2, HIDDEN_SIZE=16)
    data["TEST"] = {
        "NUM_SAMPLES": 2,
        "TOTAL_EPOCHS": 2,
        "EPOCHS_TIL_SUMMARY": 1,
        "BATCH_POINTS": 256,
        "STEPS_PER_EPOCH": 2,
        "LEARNING_RATE": 0.01,
    }
    data["EVALUATION"] = {
        "SINGLE_INR_BASELINE": False,
        "CLASSICAL_BASELINES": False,
        "SAVE_NIFTI": False,
        "FIGURES": False,
    }
    return data


def atlas_config(data_dir: Path, result_dir: Path, epochs: int = 2) -> dict[str, Any]:
    """``configs/atlas/demo_atlas.yml`` made tiny: small networks and patches, one baseline, CPU."""
    data = read_yaml(REPO / "configs" / "atlas" / "demo_atlas.yml")
    data["SETTINGS"].update(
        RESULT_DIR=str(result_dir), DATA_DIR=str(data_dir), FOLD=0, FOLD_FILE=str(data_dir / FOLDS_FILE)
    )
    data["TRAINING"].update(
        TOTAL_EPOCHS=epochs, BATCH_SIZE=2, PATCHES_PER_EYE=1, REG_POINTS=64, CHECKPOINT_EVERY=1, VAL_EVERY=1, VAL_EYES=0
    )
    data["TRAINING"]["LATENT_CODE"]["SIZE"] = 8
    data["TEST"].update(TOTAL_EPOCHS=1, STEPS_PER_EPOCH=1)
    data["DISP_MODEL"].update(NUM_LAYERS=2, HIDDEN_SIZE=16)
    data["ATLAS_MODEL"].update(NUM_LAYERS=2, HIDDEN_SIZE=16)
    data["ATLAS_PRETRAINING"].update(TOTAL_EPOCHS=1, STEPS_PER_EPOCH=1, POINTS_PER_STEP=1024)
    data["DATA"].update(SUBSMPL_FACTOR=1, PATCH_SIZE=[8, 8, 8])
    data["EVALUATION"].update(
        RESOLUTION_FACTORS=[1, 4],
        BASELINES=["atlas"],
        IDIR_EPOCHS=1,
        ATLAS_SHAPES=[],
        MAX_TEST_EYES=1,
        CHUNK_POINTS=4096,
        FIGURES=False,
    )
    data["RUNTIME"] = {"ACCELERATOR": "cpu", "DEVICES": 1, "LOGGERS": ["csv"], "PROGRESS_BAR": False}
    return data

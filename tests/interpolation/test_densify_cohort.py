"""Cohort densification: one command over every eye of a tree, containers or a store; killed,
restarted and split over two processes, it writes what one uninterrupted process writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_configs import tiny_config

from anisotropic_interpolation import densify_cohort
from anisotropic_interpolation.densify_cohort import PARTIAL_DIR, RECORD_FILE, eye_folder, gap_scores, is_done
from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.pipeline import save_model
from retina_data.containers import write_container
from retina_data.errors import ConfigError, DataError, OutputExistsError
from retina_data.eye_store import write_store
from retina_data.phantom import PhantomConfig, make_eye, write_phantom
from retina_data.tree import eye_files, read_dataset, read_eye

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "anisotropic_interpolation" / "densify_cohort.py"
COHORT = PhantomConfig(n_subjects=25, shape=(32, 8, 5))
"""50 eyes of 5 B-scans: every 2nd as input (0, 2, 4), densified twice over (gaps 1 and 3 predicted)."""
EYES = 2 * COHORT.n_subjects
KILL_AFTER = 20
TIMING = ("seconds",)
"""The only columns that differ between runs."""


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("cohort") / "data"
    write_phantom(data, COHORT, progress=False)
    return data


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """An untrained tiny gen-INR (SLO input, 8-entry codes) with a one-epoch latent fit."""
    config = tiny_config(TEST={"TOTAL_EPOCHS": 1, "STEPS_PER_EPOCH": 2, "BATCH_POINTS": 256})
    torch.manual_seed(0)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=8, num_classes=13))
    return save_model(tmp_path_factory.mktemp("model") / "model.pt", network, config, None, [])


def _argv(model: Path, data: Path | str | list[Path], out: Path, *extra: str, factor: int = 2) -> list[str]:
    sources = [str(path) for path in data] if isinstance(data, list) else [str(data)]
    return [
        str(model),
        *sources,
        "--subsample",
        "2",
        "--factor",
        str(factor),
        "--output",
        str(out),
        "--gpu",
        "-1",
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="module")
def uninterrupted(cohort, model, tmp_path_factory) -> Path:
    """The cohort densified by one process from start to end."""
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every test here (conftest) and the processes started (OMP_NUM_THREADS)
    try:
        assert densify_cohort.main(_argv(model, cohort, out)) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _files(out: Path) -> dict[str, Path]:
    return {str(path.relative_to(out)): path for path in sorted(out.rglob("*")) if path.is_file()}


def _without_timing(path: Path) -> object:
    if path.name == RECORD_FILE:
        return {key: value for key, value in json.loads(path.read_text()).items() if key not in TIMING}
    lines = [line.split(",") for line in path.read_text().splitlines()]
    keep = [i for i, column in enumerate(lines[0]) if not column.startswith(TIMING)]
    return [[line[i] for i in keep] for line in lines]


def assert_same_outputs(out: Path, expected: Path) -> None:
    """Every file of ``out`` has the bytes of ``expected``'s, the timings of the rows aside."""
    files, reference = _files(out), _files(expected)
    assert sorted(files) == sorted(reference)
    for name, path in files.items():
        if path.name in (RECORD_FILE, "metrics_all.csv", "summary.csv"):
            assert _without_timing(path) == _without_timing(reference[name]), name
        elif path.name != "summary.md":
            assert path.read_bytes() == reference[name].read_bytes(), name


def test_an_uninterrupted_run_writes_every_eye_and_one_summary_of_them(uninterrupted, cohort):
    ids = [eye.eye_id for eye in read_dataset(cohort)]
    records = [json.loads((eye_folder(uninterrupted, eye_id) / RECORD_FILE).read_text()) for eye_id in ids]
    assert [(r["eye_id"], r["input_bscans"], r["output_bscans"], r["gap_bscans"]) for r in records] == [
        (eye_id, 3, 5, 2) for eye_id in ids
    ]
    dense = read_eye(uninterrupted, "sub001", "OD")
    assert dense.shape == (32, 8, 5) and dense.labels is not None and dense.slo is not None
    np.testing.assert_allclose(dense.bscan_positions, read_eye(cohort, "sub001", "OD").bscan_positions)
    rows = (uninterrupted / "metrics_all.csv").read_text().splitlines()
    assert len(rows) == EYES + 1 and [row.split(",")[0] for row in rows[1:]] == ids
    summary = (uninterrupted / "summary.csv").read_text().splitlines()
    header, mean = summary[0].split(","), summary[-1].split(",")
    assert len(summary) == EYES + 2 and mean[:2] == ["mean", str(EYES)]
    expected = np.mean([r["fit_loss"] for r in records])
    assert float(mean[header.index("fit_loss_mean")]) == pytest.approx(expected, rel=1e-12)
    assert "| mean | 50 |" in (uninterrupted / "summary.md").read_text()
    assert not (uninterrupted / PARTIAL_DIR).exists()


@pytest.mark.slow
def test_a_killed_run_restarted_densifies_the_rest_and_writes_what_an_uninterrupted_run_writes(
    uninterrupted, cohort, model, tmp_path, capsys
):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), *_argv(model, cohort, out)],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ids = [eye.eye_id for eye in read_dataset(cohort)]
    deadline = time.monotonic() + 120
    while sum(is_done(out, eye_id) for eye_id in ids) < KILL_AFTER:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no 20 eyes within 120 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = [eye_id for eye_id in ids if is_done(out, eye_id)]
    assert KILL_AFTER <= len(done) < EYES
    # one more eye half-written: its folder was still in .partial, a file cut short, when the process died
    half = done.pop()
    partial = eye_folder(out / PARTIAL_DIR / half, half)
    partial.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(partial, ignore_errors=True)
    os.replace(eye_folder(out, half), partial)
    oct_file = next(partial.glob("oct_flat_*.nii.gz"))
    oct_file.write_bytes(oct_file.read_bytes()[:100])
    stamps = {path: path.stat().st_mtime_ns for eye_id in done for path in eye_folder(out, eye_id).iterdir()}

    assert densify_cohort.main(_argv(model, cohort, out, "--resume")) == 0

    assert f"{len(done)} of {EYES} eyes done before" in capsys.readouterr().err
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps  # the eyes done before are left alone
    assert not (out / PARTIAL_DIR).exists()
    assert_same_outputs(out, uninterrupted)


@pytest.mark.slow
def test_two_processes_write_what_one_process_writes(uninterrupted, cohort, model, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *_argv(model, cohort, out, "--devices", "2")],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert_same_outputs(out, uninterrupted)


def test_a_resume_with_other_options_is_refused_naming_the_keys_and_writes_nothing(uninterrupted, cohort, model):
    before = {name: path.stat().st_mtime_ns for name, path in _files(uninterrupted).items()}
    with pytest.raises(ConfigError, match=r"--resume with a different run: DENSIFY.FACTOR \(was 2, now 3\)"):
        densify_cohort.main(_argv(model, cohort, uninterrupted, "--resume", factor=3))
    with pytest.raises(ConfigError, match=r"TEST.TOTAL_EPOCHS \(was 1, now 3\)"):
        densify_cohort.main(_argv(model, cohort, uninterrupted, "--resume", "--set", "TEST.TOTAL_EPOCHS=3"))
    with pytest.raises(OutputExistsError, match="--resume"):
        densify_cohort.main(_argv(model, cohort, uninterrupted))
    assert {name: path.stat().st_mtime_ns for name, path in _files(uninterrupted).items()} == before


def test_a_resume_of_a_folder_that_is_no_densification_and_the_data_as_output_are_refused(cohort, model, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.csv").write_text("earlier\n")
    with pytest.raises(DataError, match=r"no run_identity.json of a cohort densification"):
        densify_cohort.main(_argv(model, cohort, other, "--resume"))
    with pytest.raises(ConfigError, match="is the data folder"):
        densify_cohort.main(_argv(model, cohort, cohort, "--overwrite"))
    with pytest.raises(DataError, match="expected one data folder or eye store"):
        densify_cohort.main(_argv(model, model, tmp_path / "out"))


def test_an_eye_gives_the_same_dense_eye_from_a_tree_containers_and_a_store(uninterrupted, cohort, model, tmp_path):
    eyes = [read_eye(cohort, f"sub00{i}", lat) for i in (1, 2) for lat in ("OD", "OS")]
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    write_container(first, eyes[:3])
    write_container(second, eyes[3:])
    store = write_store(tmp_path / "cohort.zarr", eyes, progress=False)
    from_containers, from_store = tmp_path / "containers", tmp_path / "store"
    assert densify_cohort.main(_argv(model, [first, second], from_containers)) == 0
    assert densify_cohort.main(_argv(model, store, from_store)) == 0
    for out in (from_containers, from_store):
        for eye in eyes:
            dense, expected = (
                read_eye(out, eye.subject, eye.laterality),
                read_eye(uninterrupted, eye.subject, eye.laterality),
            )
            np.testing.assert_array_equal(dense.oct, expected.oct)
            np.testing.assert_array_equal(dense.labels, expected.labels)


def test_gap_scores_are_psnr_and_dice_of_the_left_out_bscans_the_output_covers():
    stored = make_eye(PhantomConfig(n_subjects=1, shape=(32, 8, 7)), 0, "OD")
    result = replace(stored, oct=stored.oct.copy(), labels=stored.labels.copy())
    result.oct[:, :, [1, 3, 5]] += np.float32(0.1)  # the gaps (inputs: 0, 2, 4, 6) off by 0.1: MSE 0.01, 20 dB
    result.oct[:, :, 2] = 0.0  # an input B-scan is not scored
    scores = gap_scores(stored, 2, result)
    assert scores["gap_bscans"] == 3
    assert scores["gap_psnr"] == pytest.approx(20.0, abs=1e-4)
    assert scores["gap_dice"] == pytest.approx(1.0)
    result.labels[:, :, 3] = 0  # one gap B-scan of background only: the foreground Dice falls
    assert gap_scores(stored, 2, result)["gap_dice"] < 0.9
    # an output at the input positions only (factor 1) covers no gap: nothing to score
    assert gap_scores(stored, 2, stored.subsample(2)) == {}
    # an output at positions 0..4 only covers gaps 1 and 3: they are scored
    assert gap_scores(stored, 2, result.select_bscans(slice(0, 5)))["gap_bscans"] == 2


def _torchrun_like(argv: list[str], world: int) -> list[subprocess.Popen]:
    """``world`` processes of the script started as torchrun or SLURM start them (each told its
    rank in the environment; nothing kills the others when one fails)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ranks = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GROUP_RANK": "0", "WORLD_SIZE": str(world)}
    return [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), *argv],
            cwd=ROOT,
            env=dict(_env(), **ranks, RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]


@pytest.mark.slow
def test_a_process_refusing_an_eye_ends_the_first_process_too(model, tmp_path):
    """The first process waits for the other's eyes; when that one fails on a damaged eye of its
    shard, the first ends with one line naming the failure (before: it waited for ever)."""
    data = tmp_path / "data"
    write_phantom(data, PhantomConfig(n_subjects=2, shape=(32, 8, 5)), progress=False)
    damaged = eye_files(data, "sub002", "OS").oct  # the last eye: the second process's
    damaged.write_bytes(b"not a NIfTI")
    argv = _argv(model, data, tmp_path / "out", "--devices", "2")
    processes = _torchrun_like(argv, 2)
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [2, 2]
    assert f"{damaged}: cannot read NIfTI" in errors[1]
    assert "another process of the run ended before its eyes were done" in errors[0]
    assert f"{damaged}: cannot read NIfTI" in errors[0]


@pytest.mark.slow
def test_a_process_killed_without_a_word_ends_the_first_process_once_it_falls_silent(cohort, model, tmp_path):
    """The second process is SIGKILLed (no failure marker): its count stops, and the first process,
    through its own eyes, ends with one line once the count has stood still for SILENCE_SECONDS
    (before: it polled for the missing eyes for ever)."""
    out = tmp_path / "out"
    first, second = _torchrun_like(_argv(model, cohort, out, "--devices", "2"), 2)
    try:
        deadline = time.monotonic() + 120
        while sum(1 for _ in out.glob("sub*/O[DS]")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        second.kill()
        second.communicate(timeout=30)
        error = first.communicate(timeout=densify_cohort.SILENCE_SECONDS + 120)[1]
    finally:  # a first process that never ends is not left behind
        first.kill()
    assert first.returncode == 2, error
    lines = [line for line in error.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "process 1 of the run has given no sign of life" in lines[0], error
    assert "--resume densifies them" in lines[0]

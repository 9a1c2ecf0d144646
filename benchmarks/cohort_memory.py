"""Peak memory and time per step of gen-INR training on 200 and on 2,000 eyes of an eye store.

Writes a store of ``max(--eyes)`` small phantom eyes (``SHAPE``, labels and SLO) once into a
temporary folder: ``DISTINCT`` phantom eyes are generated and repeated under new subject ids (a
phantom eye takes about a second to generate; the store's reads do not depend on its contents).
Then trains in one fresh interpreter per setting (eyes x streamed or kept on the device, in
interleaved rounds): a few dozen patch steps of a tiny network with one latent code per eye,
and prints each child's peak RSS (``VmHWM``), its RSS before the first step, the median time
per step (the first ``WARMUP`` steps left out), and the B-scans and bytes read per step.

The script path is measured too (:func:`run_script`): ``train_test_geninr.py``'s ``main`` in a
fresh interpreter per setting (fold loading and its checks, run folder, ``SCRIPT_STEPS`` training
steps, a latent fit and dense prediction of the two eyes of one test subject, their scores;
no figures, NIfTI, LPIPS or baselines), ``TRAINING.DATA_ON_DEVICE`` false or true, with its
peak RSS and wall time.

    python -m benchmarks.cohort_memory                      # 200 and 2,000 eyes, 3 rounds
    python -m benchmarks.cohort_memory --child STORE --eyes 2000 --steps 60 [--on-device]
    python -m benchmarks.cohort_memory --script-child STORE --eyes 2000 --steps 20 [--on-device]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = (64, 64, 8)
"""``[H, W, D]`` of each eye; all its B-scans are inputs (factor 1)."""
DISTINCT = 8
LATENT = 64
BATCH_POINTS = 4096
PATCH = 16
WARMUP = 5


PAPER_BSCAN = (496, 512)
"""``H x W`` of a paper-shaped B-scan; ``PAPER_INPUTS`` input B-scans per eye, its SLO ``W x PAPER_SLO_COLUMNS``."""
PAPER_INPUTS = 16
PAPER_SLO_COLUMNS = 512


def epoch_cost(eyes: int, sampling: str, batch_points: int = 65536, patch: int = 16) -> dict[str, float]:
    """Points, steps and bytes an epoch over ``eyes`` paper-shaped eyes (labels and SLO) reads when
    streamed: ``bscan``: every input B-scan once, with its eye's SLO image; ``patches``:
    ``batch_points`` in ``patch x patch`` patches per step, each patch reading its whole B-scan and
    its eye's SLO (the patches of a step almost always fall on distinct eyes at this scale)."""
    height, width = PAPER_BSCAN
    points = eyes * PAPER_INPUTS * height * width
    bscan_bytes = height * width * (4 + 1)
    slo_bytes = width * PAPER_SLO_COLUMNS * 4
    if sampling == "bscan":
        steps, reads = eyes * PAPER_INPUTS, eyes * PAPER_INPUTS
    else:
        per_step = batch_points // (patch * patch)
        steps = -(-points // (per_step * patch * patch))
        reads = steps * per_step
    return {
        "points": points,
        "steps": steps,
        "bytes": reads * (bscan_bytes + slo_bytes),
        "store_bytes": eyes * (PAPER_INPUTS * bscan_bytes + slo_bytes),
    }


def write_cohort(location: Path, count: int) -> float:
    """A store of ``count`` eyes at ``location`` (``DISTINCT`` phantom eyes repeated under new
    subject ids); the seconds it took."""
    from retina_data.eye_store import write_store
    from retina_data.phantom import PhantomConfig, make_eye

    started = time.perf_counter()
    config = PhantomConfig(n_subjects=DISTINCT // 2, shape=SHAPE)
    base = [make_eye(config, subject, laterality) for subject in range(DISTINCT // 2) for laterality in ("OD", "OS")]
    eyes = (
        dataclasses.replace(base[index % DISTINCT], subject=f"cohort{index // 2:05d}", meta={})
        for index in range(count)
    )
    write_store(location, eyes, progress=False)
    return time.perf_counter() - started


def train(location: Path, eyes: int, steps: int, on_device: bool) -> dict[str, float]:
    """``steps`` training steps on the first ``eyes`` eyes of the store; the measurements."""
    import torch

    from anisotropic_interpolation.config import ExperimentConfig
    from anisotropic_interpolation.model import NetworkInputs, build_network
    from anisotropic_interpolation.sampling import SparseVolumes, TrainingVolumes
    from anisotropic_interpolation.streaming import StreamedVolumes
    from anisotropic_interpolation.training import NetworkTrainer
    from retina_data.config import from_dict
    from retina_data.eye_store import EyeStore
    from retina_data.memory import peak_rss_mib, process_status_kib

    torch.set_num_threads(1)
    config = from_dict(
        {
            "PREPROCESSING": {"BSCAN_SUBSAMPLE_FACTOR": 1, "SLICE_COORD_SCALE": 1.0},
            "TRAINING": {
                "LATENT_CODE": {"SIZE": LATENT},
                "TOTAL_EPOCHS": 1,
                "STEPS_PER_EPOCH": steps,
                "SAMPLING": "patches",
                "BATCH_POINTS": BATCH_POINTS,
                "PATCH_SIZE": PATCH,
                "LOSS_RECON": "MSE",
                "LR_SCHEDULE": "constant",
            },
            "MODEL": {"NUM_LAYERS": 2, "HIDDEN_SIZE": 32, "ACTIVATION": "SIREN"},
        },
        ExperimentConfig,
        source="cohort benchmark",
    )
    store = EyeStore.open(location)
    ids = store.eye_ids[:eyes]
    data: TrainingVolumes
    if on_device:
        data = SparseVolumes.from_eyes(
            [store.read_eye(eye_id) for eye_id in ids], use_labels=True, use_slo=True, slice_scale=1.0, device="cpu"
        )
    else:
        data = StreamedVolumes.from_store(store, ids, use_labels=True, use_slo=True, slice_scale=1.0, device="cpu")
    torch.manual_seed(0)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=LATENT, num_classes=13))
    trainer = NetworkTrainer(network, data, config, None, progress=False)
    ready = process_status_kib("VmRSS") / 1024
    trainer.source.start_epoch()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        trainer.step()
        times.append(time.perf_counter() - started)
    read = (data.bscans_read, data.bytes_read) if isinstance(data, StreamedVolumes) else (0, 0)
    return {
        "eyes": eyes,
        "on_device": on_device,
        "ready_mib": ready,
        "peak_mib": peak_rss_mib(),
        "step_s": statistics.median(times[WARMUP:] or times),
        "points": trainer.plan.points,
        "bscans_per_step": read[0] / steps,
        "bytes_per_step": read[1] / steps,
    }


SCRIPT_STEPS = 20
"""Training steps of a script run (one epoch)."""
SCRIPT_FACTOR = 2
"""``BSCAN_SUBSAMPLE_FACTOR`` of a script run: 4 of the 8 B-scans are inputs, the others scored."""


def write_folds(location: Path, eyes: int) -> str:
    """A folds file beside the store for a script run on its first ``eyes`` training eyes: fold 0
    tests on subject ``cohort00000`` (two eyes) and trains on the next ``eyes / 2`` subjects; its name."""
    name = f"folds_{eyes}.yml"
    train = ", ".join(f"cohort{subject:05d}" for subject in range(1, eyes // 2 + 1))
    (location / name).write_text(f"FOLD:\n  0: {{TRAIN: [{train}], TEST: [cohort00000]}}\n")
    return name


def script_config(location: Path, eyes: int, steps: int, on_device: bool, folder: Path) -> Path:
    """The YAML config of a script run on ``eyes`` training eyes of the store (written into ``folder``)."""
    from anisotropic_interpolation.config import ExperimentConfig
    from retina_data.config import from_dict, save_config

    config = from_dict(
        {
            "SETTINGS": {
                "PROJECT_NAME": "cohort",
                "IMG_DIR": str(location),
                "FOLD": 0,
                "FOLDS_FILE": write_folds(location, eyes),
                "RESULT_DIR": str(folder),
                "COMPILE": False,
            },
            "PREPROCESSING": {"BSCAN_SUBSAMPLE_FACTOR": SCRIPT_FACTOR, "SLICE_COORD_SCALE": 1.0},
            "TRAINING": {
                "LATENT_CODE": {"SIZE": LATENT},
                "NUM_SAMPLES": eyes,
                "TOTAL_EPOCHS": 1,
                "STEPS_PER_EPOCH": steps,
                "SAMPLING": "patches",
                "BATCH_POINTS": BATCH_POINTS,
                "PATCH_SIZE": PATCH,
                "LOSS_RECON": "MSE",
                "LR_SCHEDULE": "constant",
                "EARLY_STOPPING_PATIENCE": 0,
                "DATA_ON_DEVICE": on_device,
                "MIXED_PRECISION": False,
            },
            "MODEL": {"NUM_LAYERS": 2, "HIDDEN_SIZE": 32, "ACTIVATION": "SIREN"},
            "TEST": {
                "TOTAL_EPOCHS": 2,
                "STEPS_PER_EPOCH": 2,
                "SAMPLING": "patches",
                "BATCH_POINTS": BATCH_POINTS,
                "LR_SCHEDULE": "constant",
            },
            "EVALUATION": {
                "SINGLE_INR_BASELINE": False,
                "CLASSICAL_BASELINES": False,
                "SAVE_NIFTI": False,
                "FIGURES": False,
                "LPIPS": False,
            },
        },
        ExperimentConfig,
        source="cohort benchmark",
    )
    path = folder / f"config_{eyes}_{'device' if on_device else 'streamed'}.yaml"
    save_config(config, path)
    return path


def train_script(location: Path, eyes: int, steps: int, on_device: bool) -> dict[str, float]:
    """``train_test_geninr.py``'s ``main`` on ``eyes`` training eyes of the store (this process):
    its exit code, peak RSS and wall time."""
    import torch

    from anisotropic_interpolation.train_test_geninr import main as script_main
    from retina_data.memory import peak_rss_mib

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        config = script_config(location, eyes, steps, on_device, Path(folder))
        started = time.perf_counter()
        code = script_main([str(config), "--gpu", "-1", "--quiet", "--output", str(Path(folder) / "run")])
        wall = time.perf_counter() - started
    return {"eyes": eyes, "on_device": on_device, "exit": code, "peak_mib": peak_rss_mib(), "wall_s": wall}


def measure_children(
    flag: str, location: Path, eyes: tuple[int, ...], steps: int, rounds: int
) -> dict[tuple[int, bool], list[dict]]:
    """Run ``python -m benchmarks.cohort_memory <flag>`` once per setting (each eye count, streamed and
    kept) and round, interleaved, each in its own interpreter; the JSON results by setting."""
    settings = [(count, on_device) for on_device in (False, True) for count in eyes]
    measured: dict[tuple[int, bool], list[dict]] = {setting: [] for setting in settings}
    for _ in range(rounds):
        for count, on_device in settings:
            command = [
                sys.executable,
                "-m",
                "benchmarks.cohort_memory",
                flag,
                str(location),
                "--eyes",
                str(count),
                "--steps",
                str(steps),
            ] + (["--on-device"] if on_device else [])
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            measured[(count, on_device)].append(json.loads(output.strip().splitlines()[-1]))
    return measured


def run_script(location: Path, eyes: tuple[int, ...], steps: int, rounds: int) -> list[dict]:
    """:func:`train_script` per setting (eyes x streamed or kept), each in its own interpreter,
    ``rounds`` interleaved rounds; per setting the medians and the spread of the wall time."""
    measured = measure_children("--script-child", location, eyes, steps, rounds)
    rows = []
    for results in measured.values():
        walls = [result["wall_s"] for result in results]
        rows.append(
            {
                **results[0],
                "peak_mib": statistics.median(result["peak_mib"] for result in results),
                "peak_spread_mib": max(r["peak_mib"] for r in results) - min(r["peak_mib"] for r in results),
                "wall_s": statistics.median(walls),
                "spread": max(walls) / min(walls),
                "exit": max(result["exit"] for result in results),
            }
        )
    return rows


def script_table(rows: list[dict]) -> list[str]:
    """The script rows of :func:`run` as a markdown table, with the 2,000-against-200 ratios."""
    lines = [
        "| eyes | training eyes | peak RSS (VmHWM, MiB) | peak spread (MiB) | wall s | spread | exit |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {row['eyes']:,} | {'kept (DATA_ON_DEVICE true)' if row['on_device'] else 'streamed'} | "
        f"{row['peak_mib']:,.0f} | {row['peak_spread_mib']:,.1f} | {row['wall_s']:.1f} | {row['spread']:.2f} | "
        f"{row['exit']} |"
        for row in rows
    ]
    by_setting = {(row["eyes"], row["on_device"]): row for row in rows}
    for on_device, name in ((False, "streamed"), (True, "kept")):
        counts = sorted(eyes for eyes, kept in by_setting if kept == on_device)
        if len(counts) > 1:
            small, large = by_setting[(counts[0], on_device)], by_setting[(counts[-1], on_device)]
            lines += [
                "",
                (
                    f"{name}, {counts[-1]:,} eyes against {counts[0]:,}: peak RSS "
                    f"{large['peak_mib'] - small['peak_mib']:+,.0f} MiB "
                    f"({large['peak_mib'] / small['peak_mib'] - 1:+.1%})."
                ),
            ]
    return lines


def run(
    eyes: tuple[int, ...] = (200, 2000), steps: int = 60, rounds: int = 3, script_steps: int = SCRIPT_STEPS
) -> dict:
    """Write the store, then measure every setting in its own interpreter, ``rounds`` interleaved
    rounds; per setting the median of the rounds and the spread (largest / smallest step time)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory() as folder:
        location = Path(folder) / "cohort.zarr"
        write_s = write_cohort(location, max(eyes) + 2)  # and a test subject for the script path
        store_bytes = sum(path.stat().st_size for path in location.rglob("*") if path.is_file())
        script_rows = run_script(location, eyes, script_steps, rounds) if script_steps else []
        measured = measure_children("--child", location, eyes, steps, rounds)
    rows = []
    for results in measured.values():
        times = [result["step_s"] for result in results]
        row = {
            key: statistics.median(result[key] for result in results)
            for key in ("ready_mib", "peak_mib", "step_s", "bscans_per_step", "bytes_per_step")
        }
        rows.append({**results[0], **row, "spread": max(times) / min(times)})
    return {
        "rows": rows,
        "script_rows": script_rows,
        "write_s": write_s,
        "store_bytes": store_bytes,
        "load": load,
        "load_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
        "steps": steps,
        "script_steps": script_steps,
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", type=Path, help="measure one setting on this store (internal)")
    parser.add_argument("--script-child", type=Path, help="measure one script run on this store (internal)")
    parser.add_argument(
        "--script-steps",
        type=int,
        default=SCRIPT_STEPS,
        help="training steps of each script run (0: leave the script path out)",
    )
    parser.add_argument("--eyes", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--on-device", action="store_true", help="with --child: keep the eyes on the device")
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(train(args.child, args.eyes[0], args.steps, args.on_device)))
        return
    if args.script_child is not None:
        print(json.dumps(train_script(args.script_child, args.eyes[0], args.steps, args.on_device)))
        return
    results = run(tuple(args.eyes), args.steps, args.rounds, args.script_steps)
    print(json.dumps(results, indent=1))
    print("\n".join(script_table(results["script_rows"])))


if __name__ == "__main__":
    main()

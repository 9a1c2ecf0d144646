"""Run the benchmarks and write their results as Markdown.

``python -m benchmarks.run_all --output benchmarks/results.md`` (what ``make bench`` runs).
Ratios are measured in the same run on the same machine. On 2 quiet CPU cores the throughput
section takes about 5 minutes, the ablation a few (one small gen-INR fold per variant); both
take several times longer when other work shares the cores. ``--sections`` chooses;
``--skip-compile`` leaves out the ``torch.compile`` measurements (each compilation takes
about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from anisotropic_interpolation.training import precision_label
from benchmarks import (
    atlas_ablation,
    cohort_memory,
    interpolation_ablation,
    interpolation_densify,
    interpolation_memory,
    interpolation_throughput,
)
from retina_data.commandline import run_cli
from retina_data.files import atomic_write_text

SECTIONS = (
    "throughput",
    "throughput-gpu",
    "densify",
    "memory",
    "ablation",
    "atlas-ablation",
    "densify-128",
    "atlas-memory",
    "cohort-memory",
)
DEFAULT_SECTIONS = ("throughput", "throughput-gpu", "densify", "memory", "ablation", "atlas-ablation")
DENSE_FLOOR_NOTE = (
    "At 496 B-scans (56.6 million points) the matrix products of the forward pass alone are about 11 TFLOP "
    "(0.2 MFLOP per point), over two minutes at the 80-100 GFLOP/s two cores reach here, so under a minute is "
    "out of reach for the paper network on this CPU; the one-minute aim is met for the fit plus 31 B-scans."
)


def ablation_key_lines(results: dict) -> tuple[list[str], list[str]]:
    """The markdown lines of an ablation's variants made of several keys, and of the keys that differ
    but cannot change its numbers (not run), for both trees' ablation sections."""
    keys = [
        f"- {row['variant'][2:]}: {', '.join(f'`{key}`' for key in row['keys'])}"
        for row in results["rows"]
        if row["variant"].startswith("+ ") and len(row["keys"]) > 1
    ]
    return keys, [f"- `{key}`: {why}" for key, why in results["no_effect"].items()]


def machine() -> str:
    """CPU (or GPU) name, cores and thread settings, and the load at the start."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"CPU {cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"GPU {gpu}; load average {load:.1f} at the start"
    )


THROUGHPUT_NAMES = {
    "reference": "reference re-creation (one whole B-scan of one eye per step, code tiled, two WIRE linears, fp32)",
    "paper_eager": "ours, paper mode (geninr_config.yaml: the same update), eager",
    "paper_compiled": "ours, paper mode, torch.compile",
    "fast_eager": "ours, fast mode (geninr_fast.yaml), eager",
    "fast_compiled": "ours, fast mode, torch.compile",
}


def throughput_section(compile_step: bool, device: torch.device) -> list[str]:
    workload = interpolation_throughput.Workload(device=device)
    results = interpolation_throughput.run(compile_step, workload=workload)
    on_gpu = device.type == "cuda"
    where = f"GPU {torch.cuda.get_device_name(device)}" if on_gpu else "CPU"
    split = f", whole batches, {precision_label(device, True)}" if on_gpu else ""
    lines = [
        (
            f"## 1{'g' if on_gpu else ''}. Training throughput on the {where} (paper network: WIRE 6 x 128, "
            "latent 128, SLO, 13 classes; B-scans of 230 x 496)"
        ),
        "",
        (
            "Three interleaved rounds; median points/s, median of the per-round ratios to the reference, and the "
            "spread (fastest / slowest round) that shows how steady the machine was. Paper mode computes the "
            "reference's function and update (one whole B-scan per step: 114,080 points in one pass"
            f"{split}, SSIM over the whole B-scan, the code projected once per eye instead of tiled onto every "
            "point). Fast mode also changes the method (65,536 points per step in 16 x 16 patches across eyes, "
            "in micro-batches of 8,192 points on the CPU, one shared WIRE linear map, the code into every layer, "
            "CE, 7 x 7 SSIM); torch.compile covers the step's forward and backward passes and the Adam step."
        ),
        "",
        "| Step | points per step | points/s | vs reference | spread |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, result in results.items():
        lines.append(
            f"| {THROUGHPUT_NAMES[key]} | {result['points']:,} | {result['rate']:,.0f} | "
            f"{result['ratio']:.2f}x | {result['spread']:.2f} |"
        )
    return [*lines, ""]


def densify_section() -> list[str]:
    results = interpolation_densify.run()
    eyes, paper = results["eyes"], results["paper"]
    height, width, dense = interpolation_densify.SMALL_SHAPE
    rows = [
        f"| {e['eye']} | {e['reference']['total_s']:.1f} | {e['reference']['gap_psnr']:.2f} | "
        f"{e['ours']['total_s']:.1f} | {e['ours']['gap_psnr']:.2f} | "
        f"{e['ours']['gap_psnr'] - e['reference']['gap_psnr']:+.2f} | "
        f"{e['reference']['total_s'] / e['ours']['total_s']:.1f}x | {e['reference_implementation_s']:.0f} | "
        f"{e['reference_implementation_s'] / e['ours']['total_s']:.0f}x | {e['initial_gap_psnr']:.2f} |"
        for e in eyes
    ]
    ours_total = sum(e["ours"]["total_s"] for e in eyes)
    speedup = sum(e["reference"]["total_s"] for e in eyes) / ours_total
    implementation_speedup = sum(e["reference_implementation_s"] for e in eyes) / ours_total
    worst = min(e["ours"]["gap_psnr"] - e["reference"]["gap_psnr"] for e in eyes)
    paper_31 = paper["fit_s"] + paper["predict_s"]
    return [
        "## 2. Densifying one unseen eye (latent fit + prediction), paper network",
        "",
        (
            f"Equal quality, at a reduced B-scan size ({height} x {width}, {dense} B-scans, 16 inputs, the other "
            f"{dense - 16} scored): the reference schedule takes hours per eye at paper size on 2 CPU cores. "
            "Reference schedule: 200 epochs x 16 whole B-scans, lr 0.001. Ours: 100 steps of 8,192 points in "
            "16 x 16 patches, lr 0.01 with cosine decay. Both run on our network implementation (faster per point "
            "than the reference's, so the speed-up is understated). Times are fit + prediction at all "
            f"{dense} B-scans. The first eye is the one the schedule was chosen on; the other two are eyes of "
            "subjects the population never saw."
        ),
        "",
        (
            "| Held-out eye | reference (s) | reference gap PSNR (dB) | ours (s) | ours gap PSNR (dB) | difference | "
            "speed-up | reference schedule on the reference's step (s, scaled) | speed-up vs it | "
            "initial code's gap PSNR (dB) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        (
            f"Speed-up {speedup:.1f}x against the reference schedule on our implementation, "
            f"{implementation_speedup:.0f}x against it on the reference's step (total time over the three eyes; the "
            "reference's step computes the same function, so its gap PSNR is the reference column's); largest "
            f"gap-PSNR shortfall {worst:+.2f} dB (target: within 0.2 dB). At this reduced size the reference schedule "
            "is cheap (4,096 points per step); its cost grows with the B-scan size while ours does not (below)."
        ),
        "",
        "Paper shape (a phantom eye of 230 x 496 with 31 B-scans, 16 of them input; same network and schedule):",
        "",
        "| Step | seconds |",
        "|---|---:|",
        f"| ours: latent fit ({paper['epochs']:.0f} steps) | {paper['fit_s']:.1f} |",
        f"| ours: prediction at 31 B-scans | {paper['predict_s']:.1f} |",
        f"| ours: prediction at 496 B-scans (compiled, compilation included) | {paper['predict_496_s']:.1f} |",
        (
            f"| reference schedule: latent fit, timed over 2 steps of the reference re-creation and scaled to "
            f"3,200 | {paper['reference_fit_s']:.0f} |"
        ),
        "",
        (
            f"Fit + 31 B-scans: {paper_31:.1f} s, {paper['reference_fit_s'] / paper_31:.0f}x faster than the "
            f"reference schedule's fit alone; fit + 496 B-scans: {paper['fit_s'] + paper['predict_496_s']:.0f} s."
        ),
        "",
        DENSE_FLOOR_NOTE,
        "",
    ]


def densify_larger_section() -> list[str]:
    e = interpolation_densify.equal_quality_larger()
    reference, ours = e["reference"], e["ours"]
    return [
        "## 2b. Equal-quality densify at 128 x 128 B-scans (one held-out eye, its own population)",
        "",
        "| Schedule | total (s) | gap PSNR (dB) |",
        "|---|---:|---:|",
        f"| reference: 200 epochs x 16 whole B-scans | {reference['total_s']:.1f} | {reference['gap_psnr']:.2f} |",
        f"| ours: 100 steps of 8,192 points | {ours['total_s']:.1f} | {ours['gap_psnr']:.2f} |",
        "",
        (
            f"Speed-up {reference['total_s'] / ours['total_s']:.1f}x at a gap-PSNR difference of "
            f"{ours['gap_psnr'] - reference['gap_psnr']:+.2f} dB; the initial code gives "
            f"{e['initial_gap_psnr']:.2f} dB."
        ),
        "",
    ]


def memory_section() -> list[str]:
    peak, seconds, worker = interpolation_memory.peak_rss_gib()
    workers = (
        f"the largest of torch.compile's short-lived compile workers peaked at {worker:.2f} GiB"
        if worker > 0
        else "no compile worker was started (the compiled code came from torch's on-disk cache)"
    )
    return [
        "## 3. Peak memory of a full 230 x 496 x 512 dense prediction (paper network)",
        "",
        (
            f"Peak RSS {peak:.2f} GiB for intensity + labels (target <= 4 GiB); {workers}. {seconds:.0f} s wall "
            "including the network's compilation (58 million points)."
        ),
        "",
    ]


def ablation_section() -> list[str]:
    started = time.perf_counter()
    results = interpolation_ablation.run()
    minutes = (time.perf_counter() - started) / 60
    rows = [
        f"| {row['variant']} | {row['psnr']:.2f} | {row['dice']:.3f} | {row['paper_psnr']:.2f} | "
        f"{row['paper_dice']:.1f} | {row['train_s']:.0f} | {row['fit_s']:.0f} | {row['total_s']:.0f} |"
        for row in results["rows"]
    ]
    keys, no_effect = ablation_key_lines(results)
    return [
        "## 4. Ablation: the paper mode, each improvement alone, all together (held-out phantom eyes)",
        "",
        (
            "Each row trains the population, fits the held-out eyes' codes, predicts their gap B-scans and scores "
            "them (the library functions of `pipeline.run_geninr`). The improvements are the keys whose values "
            "differ between `geninr_config.yaml` and `geninr_fast.yaml`, each switched on alone in the paper "
            f"config. Scaled down: {results['scale'].describe()}. Gap scores are means over the held-out eyes: "
            "PSNR (dB) and mean foreground Dice of our metric set; the paper's metric set's PSNR (per B-scan, "
            "with the B-scan's own data range) and Dice (%, 8 remapped classes, per B-scan)."
        ),
        "",
        (
            "| Variant | gap PSNR (dB) | gap Dice | paper-set gap PSNR (dB) | paper-set gap Dice (%) | "
            "training (s) | fit + prediction (s) | total (s) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Improvements of several keys:",
        "",
        *keys,
        "",
        "Keys that differ but cannot change these numbers (not run):",
        "",
        *no_effect,
        "",
        f"Section wall time {minutes:.0f} min.",
        "",
    ]


def atlas_ablation_section() -> list[str]:
    started = time.perf_counter()
    results = atlas_ablation.run()
    minutes = (time.perf_counter() - started) / 60
    return atlas_ablation_lines(results, minutes)


def atlas_ablation_lines(results: dict, minutes: float) -> list[str]:
    """The Markdown of the atlas ablation (:func:`benchmarks.atlas_ablation.run`'s results)."""
    rows = [
        f"| {row['variant']} | {row['dice']:.4f} | {row['dice_seed_spread']:.4f} | {row['assd_mm'] * 1000:.2f} | "
        f"{row['folding_pct']:.3f} | {row['paper_dice']:.4f} | {row['paper_assd_um']:.2f} | "
        f"{row['paper_folding_pct']:.3f} | {row['train_s']:.0f} | {row['fit_s']:.1f} | {row['total_s']:.0f} |"
        for row in results["rows"]
    ]
    keys, no_effect = ablation_key_lines(results)
    return [
        "## 5. Atlas ablation: the paper mode, each improvement alone, all together (held-out phantom eyes)",
        "",
        (
            "Each row runs a fold as `GINR_Atlas_base.py` does (median atlas, atlas pretraining, joint GINR "
            "training, the latent-only fit of every held-out eye from all its B-scans, both protocols' scores: "
            "`pipeline.load_fold`, `pipeline.train`, `evaluation.evaluate`). The improvements are the keys whose "
            "values differ between `fit_GINR_Atlas_base.yml` and `fit_GINR_Atlas_fast.yml`, each switched on alone "
            f"in the paper config. Scaled down: {results['scale'].describe()}. Ours: 3-D mean foreground Dice, ASSD "
            "(µm) and % voxels with det J <= 0 on the dense eye; the paper's: 2-D per-B-scan Dice, ASSD (µm) and % "
            "det J < 0. Seed spread: largest minus smallest Dice over the seeds (the noise level of a row)."
        ),
        "",
        (
            "| Variant | Dice | seed spread | ASSD (µm) | folding (%) | paper Dice | paper ASSD (µm) | "
            "paper folding (%) | training (s) | fit + prediction per eye (s) | total (s) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Improvements of several keys:",
        "",
        *keys,
        "",
        "Keys that differ but cannot change these numbers (not run):",
        "",
        *no_effect,
        "",
        f"Section wall time {minutes:.0f} min.",
        "",
    ]


ATLAS_MEMORY_SETTINGS = (
    [(80, "--factor 8", mode) for mode in ("--in-memory", "", "--store")]
    + [(80, "--factor 1", mode) for mode in ("", "--store")]
    + [(eyes, "--shape 64 64 8", mode) for eyes in (200, 2000) for mode in ("--in-memory", "--store")]
)
"""(eyes, shape option, how they are held) of each row of the atlas memory section."""


def atlas_memory_section(settings: Sequence[tuple[int, str, str]] = tuple(ATLAS_MEMORY_SETTINGS)) -> list[str]:
    """Peak RSS of the atlas's training eyes (benchmarks/atlas_memory.py, one process per setting;
    needs 80 x 285 MB of disk under the temporary folder at SUBSMPL_FACTOR 1)."""
    rows = []
    for eyes, shape, mode in settings:
        with tempfile.TemporaryDirectory() as cache:
            command = [
                sys.executable,
                "-m",
                "benchmarks.atlas_memory",
                "--eyes",
                str(eyes),
                *shape.split(),
                "--cache",
                cache,
                *mode.split(),
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            r = json.loads(output.strip().splitlines()[-1])
            rows.append(
                f"| {' x '.join(map(str, r['shape']))} | {r['eyes']:,} | {r['mode']} | "
                f"{r['peak_rss_mib']:,.0f} MiB | {r['anonymous_mib']:,.0f} MiB | {r['file_mib']:,.0f} MiB | "
                f"{r['patch_ms']:.1f} | {r['wall_s']:.0f} s |"
            )
    return [
        "## 6. Atlas memory: training eyes in memory, memory-mapped, or read from an eye store",
        "",
        "| eye shape | eyes | held | peak RSS | anonymous at the end | file-backed at the end | ms per patch | wall |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def cohort_memory_section() -> list[str]:
    """Gen-INR training streamed from an eye store on 200 and 2,000 eyes (benchmarks/cohort_memory.py)."""
    started = time.perf_counter()
    results = cohort_memory.run()
    minutes = (time.perf_counter() - started) / 60
    height, width, depth = cohort_memory.SHAPE
    rows = [
        f"| {row['eyes']:,} | {'kept on the device' if row['on_device'] else 'streamed from the store'} | "
        f"{row['ready_mib']:,.0f} | {row['peak_mib']:,.0f} | {row['step_s'] * 1000:.0f} | {row['spread']:.2f} | "
        f"{row['bscans_per_step']:.1f} | {row['bytes_per_step'] / 1024:,.0f} |"
        for row in results["rows"]
    ]
    by_setting = {(row["eyes"], row["on_device"]): row for row in results["rows"]}
    small, large = (by_setting[(eyes, False)] for eyes in (200, 2000))
    cost_rows = []
    for eyes in (10_000, 100_000):
        for sampling, name in (
            ("bscan", "one whole B-scan per step (paper)"),
            ("patches", "65,536 points in 16 x 16 patches per step (fast)"),
        ):
            cost = cohort_memory.epoch_cost(eyes, sampling)
            cost_rows.append(
                f"| {eyes:,} | {name} | {cost['points'] / 1e9:,.1f} G | {cost['steps']:,} | "
                f"{cost['bytes'] / 1e12:,.2f} TB | {cost['store_bytes'] / 1e12:,.2f} TB |"
            )
    return [
        "## 7. Gen-INR training on 200 and on 2,000 eyes, streamed from an eye store or kept in memory",
        "",
        (
            f"Phantom eyes of {height} x {width} x {depth} (labels, SLO; all {depth} B-scans are inputs), "
            f"{cohort_memory.DISTINCT} generated and repeated under new subject ids into one store (written in "
            f"{results['write_s']:.0f} s, {results['store_bytes'] / 2**20:,.0f} MiB on disk). Each row trains "
            f"{results['steps']} patch steps ({cohort_memory.BATCH_POINTS:,} points in {cohort_memory.PATCH} x "
            f"{cohort_memory.PATCH} patches, SIREN 2 x 32, latent {cohort_memory.LATENT}, one thread) in a fresh "
            f"interpreter; {results['rounds']} interleaved rounds, medians, spread = slowest / fastest round's "
            f"step time. Load average {results['load']:.1f} at the start, {results['load_after']:.1f} at the end."
        ),
        "",
        (
            "| eyes | training eyes | RSS before the first step (MiB) | peak RSS (VmHWM, MiB) | ms per step | spread | "
            "B-scans read per step | KiB read per step |"
        ),
        "|---:|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        (
            f"Streamed, 2,000 eyes against 200: peak RSS {large['peak_mib'] / small['peak_mib'] - 1:+.1%}, time per "
            f"step {large['step_s'] / small['step_s'] - 1:+.1%}."
        ),
        "",
        (
            f"The script, `train_test_geninr.py` (its `main` in a fresh interpreter: fold loading with its checks, "
            f"run folder, {results['script_steps']} steps, one test subject fitted and scored):"
        ),
        "",
        *(cohort_memory.script_table(results["script_rows"]) if results["script_rows"] else ["(not run)"]),
        "",
        (
            "One epoch at paper shape streamed (496 x 512 B-scans, 16 inputs per eye, labels, a 512 x 512 SLO "
            "read whole with each B-scan's eye; `cohort_memory.epoch_cost`):"
        ),
        "",
        "| eyes | step | points | steps | read per epoch | input B-scans + SLO in the store |",
        "|---:|---|---:|---:|---:|---:|",
        *cost_rows,
        "",
        f"Section wall time {minutes:.0f} min.",
        "",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results.md"))
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile measurement")
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(DEFAULT_SECTIONS),
        help="benchmarks to run (default: %(default)s; densify-128 adds ~15 min)",
    )
    args = parser.parse_args(argv)
    lines = [
        "# Benchmark results",
        "",
        machine(),
        "",
        "Absolute numbers vary with the machine and its load; the ratios within one run are what counts.",
        "",
    ]
    sections = {
        "throughput": lambda: throughput_section(not args.skip_compile, torch.device("cpu")),
        "throughput-gpu": lambda: throughput_section(not args.skip_compile, torch.device("cuda", 0)),
        "densify": densify_section,
        "memory": memory_section,
        "ablation": ablation_section,
        "atlas-ablation": atlas_ablation_section,
        "atlas-memory": atlas_memory_section,
        "cohort-memory": cohort_memory_section,
        "densify-128": densify_larger_section,
    }
    chosen = list(args.sections)
    if not torch.cuda.is_available():
        chosen = [name for name in chosen if name != "throughput-gpu"]
        lines += [
            (
                "No GPU on this machine: the GPU figures (training throughput against the reference on CUDA, "
                "target >= 10x) are not measured here."
            ),
            "",
        ]
    for name in chosen:
        part = sections[name]()
        print("\n".join(part), flush=True)
        lines += part
        atomic_write_text(args.output, "\n".join(lines))  # results so far, in case a later section is stopped
    return 0


if __name__ == "__main__":
    run_cli(main)

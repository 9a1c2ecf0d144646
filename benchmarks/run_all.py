"""Run the benchmarks and write their results as Markdown.

``python -m benchmarks.run_all --output benchmarks/results.md`` (what ``make bench`` runs).
Each measurement is short (seconds to a minute); ratios are measured in the same run on the
same machine. ``--skip-compile`` leaves out the ``torch.compile`` measurement (its one-off
compilation takes about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks import interpolation_densify, interpolation_memory, interpolation_throughput
from retina_data.commandline import run_cli
from retina_data.files import atomic_write_text


SECTIONS = ("throughput", "densify", "memory")


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
    return (f"CPU {cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
            f"GPU {gpu}; load average {load:.1f} at the start")


def throughput_section(compile_step: bool) -> list[str]:
    results = interpolation_throughput.run(compile_step)
    lines = ["## 1. Training throughput (paper network, WIRE 6 x 128, latent 128, SLO, 13 classes)", "",
             "Three interleaved rounds; median points/s, median of the per-round ratios, and the spread "
             "(fastest / slowest round) that shows how steady the machine was.", "",
             "| Step | points/s | vs reference | spread |", "|---|---:|---:|---:|"]
    names = {"reference": "reference re-creation (one B-scan per step, code tiled)",
             "ours_eager": "ours, eager (65,536 points in 16 x 16 patches, micro-batches of 8,192, code projected "
                           "per eye)",
             "ours_compiled": "ours, torch.compile of micro-batch forward + backward and the Adam step"}
    for key, result in results.items():
        lines.append(f"| {names[key]} | {result['rate']:,.0f} | {result['ratio']:.2f}x | {result['spread']:.2f} |")
    return lines + [""]


def densify_section() -> list[str]:
    small = interpolation_densify.equal_quality()
    paper = interpolation_densify.paper_shape_timing()
    ours_paper = paper["ours_fit_s"] + paper["ours_predict_31_s"]
    return [
        "## 2. Densifying one unseen eye (latent fit + prediction)", "",
        "Equal quality, reduced B-scan size (32 x 32, 16 input B-scans, predicted at 64; the reference schedule "
        "at paper size takes hours):", "",
        "| Schedule | seconds | gap PSNR (dB) |", "|---|---:|---:|",
        f"| reference (200 epochs x 16 whole B-scans) | {small['reference_s']:.1f} | {small['reference_gap_psnr']:.2f} |",
        f"| ours (random patches, convergence check) | {small['ours_s']:.1f} | {small['ours_gap_psnr']:.2f} |",
        "", f"Speed-up {small['reference_s'] / small['ours_s']:.1f}x at a gap-PSNR difference of "
        f"{small['ours_gap_psnr'] - small['reference_gap_psnr']:+.2f} dB.", "",
        "Paper shape (230 x 496, 16 input B-scans, paper network, timing only):", "",
        "| Step | seconds |", "|---|---:|",
        f"| ours: latent fit | {paper['ours_fit_s']:.1f} |",
        f"| ours: prediction at 31 B-scans | {paper['ours_predict_31_s']:.1f} |",
        f"| ours: prediction at 496 B-scans (timed on 62, scaled) | {paper['ours_predict_496_s_extrapolated']:.1f} |",
        f"| reference: latent fit, extrapolated from 2 steps | {paper['reference_fit_s_extrapolated']:.0f} |",
        "", f"Fit + 31 B-scans: {ours_paper:.1f} s, {paper['reference_fit_s_extrapolated'] / ours_paper:.0f}x "
        "faster than the reference fit alone.", "",
    ]


def memory_section() -> list[str]:
    peak = interpolation_memory.peak_rss_gib()
    return ["## 3. Peak memory of a full 230 x 496 x 512 dense prediction", "",
            f"Peak RSS {peak:.2f} GiB (intensity + labels, 512 MB chunk budget; target <= 4 GiB).", ""]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results.md"))
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile measurement")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="benchmarks to run (default: all)")
    args = parser.parse_args(argv)
    lines = ["# Benchmark results", "", machine(), "",
             "Measured on a machine shared with other jobs; absolute numbers vary with the load, the ratios "
             "within one run are what counts.", ""]
    sections = {"throughput": lambda: throughput_section(not args.skip_compile), "densify": densify_section,
                "memory": memory_section}
    for name in args.sections:
        part = sections[name]()
        print("\n".join(part), flush=True)
        lines += part
        atomic_write_text(args.output, "\n".join(lines))  # results so far, in case a later section is stopped
    return 0


if __name__ == "__main__":
    run_cli(main)

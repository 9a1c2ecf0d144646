"""Peak resident memory of a full 230 x 496 x 512 dense prediction, measured in a subprocess.

``python -m benchmarks.interpolation_memory`` prints the peak RSS (GiB) and the wall time of
predicting the whole volume (intensity and labels, default 512 MB chunk budget, chunks of
8,192 points on the CPU) with the paper network (WIRE 6 x 128, latent 128, SLO, 13
classes); 58 million points, so the network is compiled (its compilation is included).
"""

from __future__ import annotations

import resource
import subprocess
import sys

import numpy as np
import torch

SHAPE = (230, 496, 512)


def predict_full_volume() -> None:
    from anisotropic_interpolation.config import load_experiment_config
    from anisotropic_interpolation.inference import predict_volume
    from anisotropic_interpolation.model import NetworkInputs, build_network
    from benchmarks.interpolation_throughput import PAPER_CONFIG
    from retina_data.eye import Eye

    config = load_experiment_config(PAPER_CONFIG)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=128, num_classes=13))
    height, width, depth = SHAPE
    inputs = np.arange(0, depth, 32)
    rng = np.random.default_rng(0)
    eye = Eye(
        oct=rng.random((height, width, inputs.size), dtype=np.float32),
        spacing=(0.0039, 0.012, 0.012 * 32),
        subject="bench",
        slo=rng.random((width, depth), dtype=np.float32),
        bscan_positions=inputs * 0.012,
        slo_positions=np.arange(depth) * 0.012,
    )
    prediction = predict_volume(network, torch.zeros(128), eye, np.arange(depth) * 0.012, device=torch.device("cpu"))
    assert prediction.intensity.shape == SHAPE


def peak_rss_gib() -> tuple[float, float, float]:
    """Run :func:`predict_full_volume` in a fresh interpreter: its peak RSS (GiB), wall seconds,
    and the peak RSS (GiB) of the largest helper process (``torch.compile``'s compile workers)."""
    code = (
        "import resource, time, benchmarks.interpolation_memory as m; t = time.perf_counter(); "
        "m.predict_full_volume(); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak_kib, seconds, worker_kib = result.stdout.strip().splitlines()[-1].split()
    return int(peak_kib) / 2**20, float(seconds), int(worker_kib) / 2**20  # ru_maxrss: KiB on Linux


if __name__ == "__main__":
    peak, seconds, worker = peak_rss_gib()
    print(
        f"peak RSS {peak:.2f} GiB (largest compile worker {worker:.2f} GiB), {seconds:.0f} s "
        f"({resource.getpagesize()} B pages)"
    )

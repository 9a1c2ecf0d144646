"""Peak resident memory of a full 230 x 496 x 512 dense prediction, measured in a subprocess.

``python -m benchmarks.interpolation_memory`` prints the peak RSS (GiB) of predicting the
whole volume (intensity and labels, default 512 MB chunk budget). The network is narrow
(2 x 16) so the run takes seconds; the chunk size adapts to the network, so the working
set is the same budget as with the paper network.
"""

from __future__ import annotations

import resource
import subprocess
import sys

import numpy as np
import torch

SHAPE = (230, 496, 512)


def predict_full_volume() -> None:
    from anisotropic_interpolation.config import ExperimentConfig
    from anisotropic_interpolation.inference import predict_volume
    from anisotropic_interpolation.model import NetworkInputs, build_network
    from retina_data.config import from_dict
    from retina_data.eye import Eye

    config = from_dict({"MODEL": {"NUM_LAYERS": 2, "HIDDEN_SIZE": 16}}, ExperimentConfig)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=128, num_classes=13))
    height, width, depth = SHAPE
    inputs = np.arange(0, depth, 32)
    rng = np.random.default_rng(0)
    eye = Eye(oct=rng.random((height, width, inputs.size), dtype=np.float32), spacing=(0.0039, 0.012, 0.012 * 32),
              subject="bench", slo=rng.random((width, depth), dtype=np.float32),
              bscan_positions=inputs * 0.012, slo_positions=np.arange(depth) * 0.012)
    prediction = predict_volume(network, torch.zeros(128), eye, np.arange(depth) * 0.012, device=torch.device("cpu"))
    assert prediction.intensity.shape == SHAPE


def peak_rss_gib() -> float:
    """Run :func:`predict_full_volume` in a fresh interpreter; its peak RSS in GiB."""
    code = ("import resource, benchmarks.interpolation_memory as m; m.predict_full_volume(); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1]) / 2 ** 20  # ru_maxrss is in KiB on Linux


if __name__ == "__main__":
    print(f"peak RSS {peak_rss_gib():.2f} GiB ({resource.getpagesize()} B pages)")

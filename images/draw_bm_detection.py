"""Draw ``images/bm_detection.png``: Bruch's membrane found in the image, on a phantom eye
(against its known BM) and on the shared Spectralis test file (no labels).

Run from the repository root: ``python images/draw_bm_detection.py`` (needs eyepy and
``../shared/testdata``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from retina_data.bm_detection import detect_bm_rows
from retina_data.importers.spectralis import import_spectralis
from retina_data.phantom import PhantomConfig, make_scanned_eye

ROOT = Path(__file__).resolve().parents[1]
SHARED_VOL = ROOT.parent / "shared" / "testdata" / "spectralis_synthetic_10x40x50.vol"


def main() -> None:
    eye, truth = make_scanned_eye(PhantomConfig(n_subjects=1, shape=(230, 496, 49)), 0, "OD")
    found = detect_bm_rows(eye.oct, eye.spacing)
    error_um = np.abs(found - truth) * eye.spacing[0] * 1000
    scan = import_spectralis(SHARED_VOL)
    scan_bm = detect_bm_rows(scan.oct, scan.spacing)
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [2.2, 1]})
    bscan = 24
    axes[0].imshow(eye.oct[:, :, bscan], cmap="gray", aspect="auto")
    axes[0].plot(truth[:, bscan], color="lime", lw=1.2, label="phantom's BM")
    axes[0].plot(found[:, bscan], color="red", lw=0.8, ls="--", label="found in the image")
    axes[0].set_title(f"phantom B-scan {bscan} (unflattened): mean |error| {error_um.mean():.1f} µm over the eye")
    axes[0].legend(loc="lower left", fontsize=8)
    middle = scan.shape[2] // 2
    axes[1].imshow(scan.oct[:, :, middle], cmap="gray", aspect="auto")
    axes[1].plot(scan_bm[:, middle], color="red", lw=1.0, ls="--")
    axes[1].set_title(f"shared .vol, B-scan {middle} (no labels)")
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(ROOT / "images" / "bm_detection.png", dpi=110)


if __name__ == "__main__":
    main()

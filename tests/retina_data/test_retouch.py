"""Import of RETOUCH challenge cases (``oct.mhd`` + ``reference.mhd``) written here with SimpleITK."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from retina_data.errors import DataError
from retina_data.importers.retouch import import_retouch

D, H, W = 4, 16, 10
SPACING_ITK = (0.0115, 0.0039, 0.24)
"""``(dW, dH, dD)`` in mm, as the MetaImage header stores it (x along the B-scan, y the depth)."""


def _write(folder, samples: np.ndarray, reference: np.ndarray | None = None):
    folder.mkdir(exist_ok=True)
    for name, array in (("oct", samples), ("reference", reference)):
        if array is None:
            continue
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(SPACING_ITK)
        sitk.WriteImage(image, str(folder / f"{name}.mhd"))
    return folder


def _samples() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 65536, (D, H, W), dtype=np.uint16)


def test_retouch_volume_becomes_our_axes_spacing_and_16_bit_intensities(tmp_path):
    samples = _samples()
    eye = import_retouch(_write(tmp_path / "TRAIN001", samples), subject="train001", laterality="OS")
    assert eye.shape == (H, W, D) and eye.eye_id == "train001_OS"
    assert eye.spacing == pytest.approx((0.0039, 0.0115, 0.24))
    assert eye.bscan_positions == pytest.approx(0.24 * np.arange(D))
    assert eye.oct[:, :, 2] == pytest.approx(samples[2] / 65535.0, abs=1e-7)  # not rounded to 8 bits
    assert eye.labels is None and eye.slo is None


def test_retouch_fluids_are_counted_but_fill_no_labels(tmp_path):
    reference = np.zeros((D, H, W), dtype=np.uint8)
    reference[1, 5:7, 2:5] = 1  # 6 voxels IRF
    reference[2, 10, 0:4] = 2  # 4 voxels SRF
    reference[3, 12:14, 8] = 3  # 2 voxels PED
    eye = import_retouch(_write(tmp_path / "c", _samples(), reference), subject="c", laterality="OD")
    assert eye.meta["retouch_fluid_voxels"] == {"IRF": 6, "SRF": 4, "PED": 2}
    assert eye.labels is None and "labels are None" in " ".join(eye.meta["import_notes"])


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (np.zeros((D, H, W - 1), dtype=np.uint8), r"reference.mhd: shape \(4, 16, 9\) does not match"),
        (np.full((D, H, W), 4, dtype=np.uint8), r"reference.mhd: values \[4\]; expected 0 and the fluids"),
    ],
)
def test_a_reference_that_does_not_fit_is_one_data_error(tmp_path, reference, message):
    with pytest.raises(DataError, match=message):
        import_retouch(_write(tmp_path / "c", _samples(), reference), subject="c", laterality="OD")


def test_a_folder_without_oct_mhd_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"no oct.mhd; expected a RETOUCH case folder"):
        import_retouch(tmp_path, subject="c", laterality="OD")


def test_a_truncated_raw_file_is_one_data_error(tmp_path):
    folder = _write(tmp_path / "c", _samples())
    raw = folder / "oct.raw"
    raw.write_bytes(raw.read_bytes()[:100])
    with pytest.raises(DataError, match=r"oct.mhd: cannot read MetaImage"):
        import_retouch(folder, subject="c", laterality="OD")

"""Import of DICOM Ophthalmic Tomography with its SLO, on files written here with pydicom."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pydicom", reason="pydicom (optional dependency 'dicom') is not installed")

from dicom_files import write_opt, write_slo
from pydicom.uid import generate_uid

from retina_data.errors import DataError
from retina_data.importers.dicom_oct import import_dicom_oct

D, H, W = 4, 12, 9
FIRST_ROW, ROW_STEP, FIRST_COL, COL_STEP = 10.5, 4.0, 6.5, 2.0
"""Frame ``d`` runs along SLO row coordinate ``10.5 + 4 d`` from column coordinate 6.5, 2 SLO
pixels per A-scan (coordinates with (0, 0) at the top left corner of the top left pixel)."""


def _bscans() -> np.ndarray:
    return np.random.default_rng(11).integers(0, 4096, (D, H, W), dtype=np.uint16)


def _lines(order=range(D)) -> np.ndarray:
    """Reference Coordinates ``[D, 2, 2]``: (row, col) of the first and the last A-scan."""
    return np.array(
        [
            [[FIRST_ROW + ROW_STEP * d, FIRST_COL], [FIRST_ROW + ROW_STEP * d, FIRST_COL + COL_STEP * (W - 1)]]
            for d in order
        ]
    )


def _write(tmp_path, lines=None, slo=True, **options):
    uid = generate_uid()
    if slo:
        write_slo(tmp_path / "slo.dcm", uid)
    return write_opt(tmp_path / "oct.dcm", _bscans(), _lines() if lines is None else lines, uid, **options)


def test_opt_frames_become_the_volume_with_its_pixel_spacing_and_laterality(tmp_path):
    eye = import_dicom_oct(_write(tmp_path), subject="p01")
    assert eye.shape == (H, W, D) and eye.eye_id == "p01_OS"
    assert eye.oct[:, :, 2] == pytest.approx(_bscans()[2] / 4095.0)  # 12 bits stored
    assert eye.spacing[:2] == pytest.approx((0.0039, 0.06))
    assert eye.labels is None


def test_bscan_positions_are_the_frame_locations_in_the_slos_mm(tmp_path):
    eye = import_dicom_oct(_write(tmp_path), subject="p01")
    assert eye.bscan_positions == pytest.approx(ROW_STEP * 0.02 * np.arange(D))  # 4 SLO rows of 0.02 mm
    assert eye.spacing[2] == pytest.approx(0.08)


def test_the_slo_found_beside_the_file_is_sampled_at_every_ascan(tmp_path):
    eye = import_dicom_oct(_write(tmp_path), subject="p01")
    rows = FIRST_ROW + ROW_STEP * np.arange(D)[None, :] - 0.5  # pixel-centre coordinates
    cols = FIRST_COL + COL_STEP * np.arange(W)[:, None] - 0.5
    assert eye.slo == pytest.approx((cols + 2 * rows) / 255.0, abs=1e-6)


def test_per_ascan_reference_coordinates_are_sampled_point_by_point(tmp_path):
    bend = np.arange(W) % 2  # a non-linear trajectory: every other A-scan one SLO row lower
    lines = np.array(
        [[[FIRST_ROW + ROW_STEP * d + bend[w], FIRST_COL + COL_STEP * w] for w in range(W)] for d in range(D)]
    )
    eye = import_dicom_oct(_write(tmp_path, lines=lines), subject="p01")
    rows = FIRST_ROW + ROW_STEP * np.arange(D)[None, :] + bend[:, None] - 0.5
    cols = FIRST_COL + COL_STEP * np.arange(W)[:, None] - 0.5
    assert eye.slo == pytest.approx((cols + 2 * rows) / 255.0, abs=1e-6)


def test_bscans_acquired_upwards_still_get_increasing_positions(tmp_path):
    eye = import_dicom_oct(_write(tmp_path, lines=_lines(reversed(range(D))), laterality="R"), subject="p01")
    assert eye.bscan_positions == pytest.approx(0.08 * np.arange(D)) and eye.laterality == "OD"


def test_without_the_slo_the_positions_use_the_bscan_length_and_say_so(tmp_path):
    eye = import_dicom_oct(_write(tmp_path, slo=False), subject="p01")
    # the scan line spans 2 (W - 1) SLO pixels for (W - 1) * 0.06 mm: 0.03 mm per (square) pixel
    assert eye.bscan_positions == pytest.approx(ROW_STEP * 0.03 * np.arange(D))
    assert eye.slo is None
    notes = " ".join(eye.meta["import_notes"])
    assert "not found beside the file" in notes and "square pixels assumed" in notes


def test_per_frame_pixel_measures_override_the_shared_ones(tmp_path):
    spacing = [(0.005, 0.05)] * D
    eye = import_dicom_oct(_write(tmp_path, per_frame_spacing=spacing), subject="p01")
    assert eye.spacing[:2] == pytest.approx((0.005, 0.05))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"locations": False}, "oct.dcm: frame 1 has no Ophthalmic Frame Location Sequence"),
        ({"frame_items": D - 1}, "oct.dcm: 3 Per-frame Functional Groups items for 4 frames"),
        (
            {"per_frame_spacing": [(0.0039, 0.06)] * (D - 1) + [(0.0039, 0.07)]},
            r"oct.dcm: frame 4 has pixel spacing \(0.0039, 0.07\) mm but frame 1",
        ),
        ({"lines": np.zeros((D, 3, 2))}, "oct.dcm: frame 1 has 6 Reference Coordinates"),
        (
            {"lines": _lines([0, 2, 1, 3])},
            "oct.dcm: the frames' locations are not parallel B-scans in increasing order",
        ),
        ({"laterality": None}, "oct.dcm: Image Laterality 'missing'; expected R or L, or give --laterality"),
    ],
)
def test_malformed_opt_is_one_data_error(tmp_path, options, message):
    path = _write(tmp_path, **options)
    with pytest.raises(DataError, match=message) as error:
        import_dicom_oct(path, subject="p01")
    assert "\n" not in str(error.value)


def test_a_non_opt_file_is_refused(tmp_path):
    slo = write_slo(tmp_path / "slo.dcm", generate_uid())
    with pytest.raises(
        DataError,
        match=r"slo.dcm: SOP class 1.2.840.10008.5.1.4.1.1.77.1.5.1; expected Ophthalmic "
        r"Tomography",
    ):
        import_dicom_oct(slo, subject="p01")
    text = tmp_path / "notes.dcm"
    text.write_text("not dicom")
    with pytest.raises(DataError, match=r"notes.dcm: cannot read DICOM"):
        import_dicom_oct(text, subject="p01")


def test_an_slo_that_is_not_the_referenced_image_is_refused(tmp_path):
    path = _write(tmp_path)
    (tmp_path / "other").mkdir()
    other = write_slo(tmp_path / "other" / "slo.dcm", generate_uid())
    with pytest.raises(DataError, match=r"other/slo.dcm: SOP Instance UID .* is not the localizer the frames refer to"):
        import_dicom_oct(path, subject="p01", slo=other)

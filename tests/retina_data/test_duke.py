"""Import of the public Duke AMD and Duke DME ``.mat`` files through eyepy, on files written here
in the layout the published sets use (MATLAB arrays ``[H, W, D]``, layer maps per B-scan)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from retina_data.errors import DataError
from retina_data.importers.duke import import_duke_amd, import_duke_dme

pytest.importorskip("eyepy", reason="eyepy (optional dependency 'spectralis') is not installed")

H, W, D = 40, 6, 5
ANNOTATED = (1, 2, 3)
"""B-scans carrying annotations; B-scans 0 and 4 are all NaN, as outside the Duke AMD circle."""


def _images() -> np.ndarray:
    """Float intensities 10..250 ``[H, W, D]``, as the sets store them."""
    return np.random.default_rng(3).uniform(10.0, 250.0, (H, W, D))


def _expected_oct(images: np.ndarray) -> np.ndarray:
    """Positive float intensities beyond 1 are scaled by their maximum."""
    return images / images.max()


def _amd_maps() -> np.ndarray:
    """``layerMaps [D, W, 3]``: ILM at 5 + w, inner RPE edge at 25, BM at 30 + (w % 2)."""
    maps = np.full((D, W, 3), np.nan)
    w = np.arange(W)
    for d in ANNOTATED:
        maps[d, :, 0], maps[d, :, 1], maps[d, :, 2] = 5 + w, 25, 30 + w % 2
    maps[3, 0] = np.nan  # one A-scan of an annotated B-scan without annotation
    return maps


def _write_amd(path, maps=None):
    scipy.io.savemat(
        path, {"images": _images(), "layerMaps": _amd_maps() if maps is None else maps, "Age": np.array([[72]])}
    )
    return path


def test_duke_amd_keeps_the_annotated_bscans_at_their_positions_with_eyepys_spacing(tmp_path):
    eye = import_duke_amd(_write_amd(tmp_path / "amd.mat"), subject="amd1001", laterality="OD")
    assert eye.shape == (H, W, len(ANNOTATED))
    assert eye.spacing == pytest.approx((0.0045, 0.0067, 0.067))
    assert eye.bscan_positions == pytest.approx(0.067 * np.array(ANNOTATED))
    assert eye.oct == pytest.approx(_expected_oct(_images())[:, :, list(ANNOTATED)], abs=1e-6)
    assert eye.slo is None and eye.eye_id == "amd1001_OD"
    notes = " ".join(eye.meta["import_notes"])
    assert "kept the 3 annotated of 5 B-scans" in notes and "1 of 18 A-scans" in notes


def test_duke_amd_boundaries_become_retina_rpe_and_choroid(tmp_path):
    eye = import_duke_amd(_write_amd(tmp_path / "amd.mat"), subject="amd1001", laterality="OS")
    rows = np.arange(H)
    for w in range(W):
        expected = np.select([rows < 5 + w, rows < 25, rows < 30 + w % 2], [0, 1, 11], 12)
        assert eye.labels[:, w, 0] == pytest.approx(expected)
    assert not eye.labels[:, 0, 2].any()  # the A-scan without annotation
    assert eye.meta["label_boundaries"] == ["ILM", "IZ/RPE", "BM"]


def test_duke_amd_with_every_bscan_has_no_labels(tmp_path):
    eye = import_duke_amd(_write_amd(tmp_path / "amd.mat"), subject="a", laterality="OD", annotated_only=False)
    assert eye.shape == (H, W, D) and eye.labels is None
    assert eye.bscan_positions == pytest.approx(0.067 * np.arange(D))


def test_duke_amd_without_any_annotation_imports_unlabelled_and_says_so(tmp_path):
    eye = import_duke_amd(_write_amd(tmp_path / "amd.mat", np.zeros((D, W, 3))), subject="a", laterality="OD")
    assert eye.shape == (H, W, D) and eye.labels is None
    assert "no layer annotations in the file: labels are None" in eye.meta["import_notes"]


def test_a_mat_file_of_another_layout_is_one_data_error(tmp_path):
    path = tmp_path / "other.mat"
    scipy.io.savemat(path, {"volume": _images()})
    with pytest.raises(DataError, match=r"other.mat: cannot read Duke AMD .mat .*KeyError: 'images'"):
        import_duke_amd(path, subject="a", laterality="OD")


DME_ROWS = (4, 8, 12, 16, 20, 26, 32, 36)
"""Rows of ILM, NFL/GCL, IPL/INL, INL/OPL, OPL/ONL, ISM/ISE, OS/RPE, BM for expert 1."""


def _write_dme(path):
    layers = {}
    for key, shift in (
        ("manualLayers1", 0),
        ("manualLayers2", 1),
        ("automaticLayersDME", 2),
        ("automaticLayersNormal", 3),
    ):
        maps = np.full((8, W, D), np.nan)
        for d in (1, 3):
            maps[:, :, d] = np.array(DME_ROWS, dtype=float)[:, None] + shift
        layers[key] = maps
    fluid = {key: np.zeros((H, W, D), dtype=np.uint8) for key in ("manualFluid1", "manualFluid2", "automaticFluidDME")}
    fluid["manualFluid1"][13:15, 2:4, 1] = 1  # inside the INL
    fluid["manualFluid1"][0:2, 0, 1] = 1  # above the ILM: not fluid of the retina
    fluid["manualFluid2"][20:22, 0, 1] = 3  # fluid instances are numbered
    scipy.io.savemat(path, {"images": _images(), **layers, **fluid})
    return path


def test_duke_dme_layers_of_the_chosen_expert_and_fluid_become_our_labels(tmp_path):
    path = _write_dme(tmp_path / "Subject_01.mat")
    eye = import_duke_dme(path, subject="dme01", laterality="OD")
    assert eye.shape == (H, W, 2) and eye.bscan_positions == pytest.approx([0.123, 0.369])
    assert eye.spacing == pytest.approx((0.00387, 0.01133, 0.246))
    ours = (1, 2, 4, 5, 6, 8, 11, 12)  # ILM->1, NFL/GCL->2, IPL/INL->4, ..., ISM/ISE->8, OS/RPE->11, BM->12
    expected = np.select([np.arange(H) < row for row in DME_ROWS], [0, *ours[:-1]], ours[-1])
    column = eye.labels[:, 0, 0]
    assert column[2:] == pytest.approx(expected[2:]) and not column[:2].any()
    assert eye.labels[13:15, 2:4, 0] == pytest.approx(np.full((2, 2), 13))
    assert int((eye.labels == 13).sum()) == 4
    second = import_duke_dme(path, subject="dme01", laterality="OD", grader="manual2")
    shifted = np.select([np.arange(H) < row + 1 for row in DME_ROWS], [0, *ours[:-1]], ours[-1])
    shifted[20:22] = 13
    assert second.labels[:, 0, 0] == pytest.approx(shifted)


def test_duke_dme_unknown_grader_is_refused(tmp_path):
    with pytest.raises(DataError, match="grader = 'expert3': expected one of manual1, manual2, automatic"):
        import_duke_dme(_write_dme(tmp_path / "s.mat"), subject="d", laterality="OD", grader="expert3")

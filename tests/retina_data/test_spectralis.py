"""Import of Heidelberg Spectralis ``.vol`` files and XML exports through eyepy."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from heyex_vol import write_vol
from heyex_xml import write_xml_export

from retina_data.errors import DataError
from retina_data.importers.spectralis import import_spectralis
from retina_data.preprocessing import bm_rows_from_labels

pytest.importorskip("eyepy", reason="eyepy (optional dependency 'spectralis') is not installed")

SHARED_VOL = Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata" / "spectralis_synthetic_10x40x50.vol"
D, H, W = 5, 48, 24
SCALE_X, DISTANCE, SCALE_Z = 0.0115, 0.12, 0.0039
SLO_SCALE = (0.02, 0.03)
START = (0.1, 0.2)
LAYER_ROWS = {
    "ILM": 8,
    "RNFL": 11,
    "GCL": 14,
    "IPL": 17,
    "INL": 20,
    "OPL": 23,
    "ELM": 26,
    "PR1": 29,
    "PR2": 33,
    "RPE": 36,
    "BM": 39,
}
"""Heyex boundary -> row at A-scan 0; each boundary dips by ``w % 3`` rows across the B-scan."""


def _display() -> np.ndarray:
    return np.random.default_rng(0).uniform(0.05, 0.95, (D, H, W))


def _ramp_slo() -> np.ndarray:
    """A localizer whose value is ``col + 2 * row``: bilinear sampling of it is exact."""
    rows, cols = np.mgrid[0:40, 0:60]
    return (cols + 2 * rows).astype(np.uint8)


def _layers(names) -> dict[str, np.ndarray]:
    dip = np.arange(W) % 3
    return {name: np.broadcast_to(LAYER_ROWS[name] + dip, (D, W)).astype(np.float32) for name in names}


def _write(tmp_path, layers=None, laterality="OS") -> Path:
    return write_vol(
        tmp_path / "scan.vol",
        _display(),
        _ramp_slo(),
        scale_x=SCALE_X,
        distance=DISTANCE,
        scale_z=SCALE_Z,
        slo_scale=SLO_SCALE,
        laterality=laterality,
        start=START,
        layers=layers,
    )


def test_vol_geometry_becomes_spacing_positions_and_laterality(tmp_path):
    eye = import_spectralis(_write(tmp_path), subject="p01")
    assert eye.eye_id == "p01_OS"
    assert eye.shape == (H, W, D)
    assert eye.spacing == pytest.approx((SCALE_Z, SCALE_X, DISTANCE))
    assert eye.bscan_positions == pytest.approx(np.arange(D) * DISTANCE)


def test_vol_bscans_come_back_as_their_display_intensities(tmp_path):
    eye = import_spectralis(_write(tmp_path))
    assert eye.oct.dtype == np.float32
    assert np.abs(eye.oct - _display().transpose(1, 2, 0)).max() <= 1.5 / 255


def test_slo_is_the_localizer_sampled_at_every_ascan(tmp_path):
    eye = import_spectralis(_write(tmp_path))
    w, d = np.meshgrid(np.arange(W), np.arange(D), indexing="ij")
    cols = (START[0] + w * SCALE_X) / SLO_SCALE[0]
    rows = (START[1] + d * DISTANCE) / SLO_SCALE[1]
    assert eye.slo.shape == (W, D)
    assert eye.slo == pytest.approx((cols + 2 * rows) / 255, abs=1e-5)


def _assert_labels_of_all_layers(eye) -> None:
    assert eye.labels.dtype == np.uint8
    ascan = eye.labels[:, 0, 0]
    assert ascan[7] == 0 and ascan[8] == 1 and ascan[11] == 2 and ascan[14] == 3
    assert ascan[26] == 7 and ascan[29] == 8 and ascan[32] == 8
    assert ascan[33] == 10 and ascan[36] == 11 and ascan[39] == 12
    assert np.array_equal(bm_rows_from_labels(eye.labels), np.broadcast_to(39 + np.arange(W)[:, None] % 3, (W, D)))
    assert "EZ/OS" in " ".join(eye.meta["import_notes"]) and "EZ/OS" not in eye.meta["label_boundaries"]


def test_layer_annotations_map_to_our_labels(tmp_path):
    _assert_labels_of_all_layers(import_spectralis(_write(tmp_path, _layers(LAYER_ROWS))))


def test_partial_annotations_use_only_the_boundaries_present(tmp_path):
    eye = import_spectralis(_write(tmp_path, _layers(["ILM", "BM"])))
    assert set(np.unique(eye.labels).tolist()) == {0, 1, 12}
    assert eye.meta["label_boundaries"] == ["ILM", "BM"]


def test_vol_without_annotations_has_no_labels_and_says_so(tmp_path):
    eye = import_spectralis(_write(tmp_path))
    assert eye.labels is None
    assert any("no layer annotations" in note for note in eye.meta["import_notes"])


def test_truncated_vol_is_a_data_error_naming_the_file(tmp_path):
    path = _write(tmp_path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"scan.vol.*cannot read Spectralis export"):
        import_spectralis(path)


def test_missing_eyepy_asks_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "eyepy", None)
    with pytest.raises(DataError, match=r"pip install 'resa-oct\[spectralis\]'"):
        import_spectralis(_write(tmp_path))


@pytest.mark.skipif(not SHARED_VOL.is_file(), reason=f"shared test file {SHARED_VOL} is not present")
def test_vol_written_by_another_tool_imports():
    eye = import_spectralis(SHARED_VOL)
    assert eye.shape == (40, 50, 10) and eye.laterality == "OD"
    assert eye.spacing == pytest.approx((0.003872, 0.011819, 0.0314444), rel=1e-5)
    assert eye.bscan_positions == pytest.approx(np.arange(10) * 0.0314444, abs=2e-3)
    assert eye.oct.min() == 0 and eye.oct.max() == 1
    assert eye.labels is None
    assert eye.slo is None and any("localizer" in note for note in eye.meta["import_notes"])


# --- XML exports (a folder of an .xml file and 8-bit images) ---


def _bscan_images() -> np.ndarray:
    return np.round(_display() * 255).astype(np.uint8)


def _write_xml(tmp_path, layers=None, laterality="OD") -> Path:
    return write_xml_export(
        tmp_path / "export",
        _bscan_images(),
        _ramp_slo(),
        scale_x=SCALE_X,
        scale_y=SCALE_Z,
        distance=DISTANCE,
        slo_scale=SLO_SCALE,
        laterality=laterality,
        start=START,
        layers=layers,
    )


@pytest.mark.parametrize("laterality", ["OD", "OS"])
def test_xml_export_geometry_intensities_and_slo(tmp_path, laterality):
    eye = import_spectralis(_write_xml(tmp_path, laterality=laterality), subject="p01")
    assert eye.eye_id == f"p01_{laterality}" and eye.shape == (H, W, D)
    assert eye.spacing == pytest.approx((SCALE_Z, SCALE_X, DISTANCE))
    assert eye.bscan_positions == pytest.approx(np.arange(D) * DISTANCE)
    assert eye.oct == pytest.approx(_bscan_images().transpose(1, 2, 0) / 255, abs=1e-6)
    w, d = np.meshgrid(np.arange(W), np.arange(D), indexing="ij")
    expected_slo = ((START[0] + w * SCALE_X) / SLO_SCALE[0] + 2 * (START[1] + d * DISTANCE) / SLO_SCALE[1]) / 255
    assert eye.slo == pytest.approx(expected_slo, abs=1e-5)


def test_xml_export_layer_annotations_map_to_our_labels(tmp_path):
    _assert_labels_of_all_layers(import_spectralis(_write_xml(tmp_path, _layers(LAYER_ROWS))))


def test_xml_export_is_found_from_its_folder(tmp_path):
    xml = _write_xml(tmp_path)
    eye = import_spectralis(xml.parent, subject="p02")
    assert eye.eye_id == "p02_OD" and eye.oct == pytest.approx(import_spectralis(xml).oct)


def test_xml_export_with_a_missing_bscan_image_is_a_data_error_naming_it(tmp_path):
    xml = _write_xml(tmp_path)
    (xml.parent / "bscan_002.png").unlink()
    with pytest.raises(DataError, match=r"scan.xml.*cannot read Spectralis export.*bscan_002.png"):
        import_spectralis(xml)


@pytest.mark.parametrize(("pattern", "name"), [(1, "line scan"), (2, "circle scan"), (5, "radial scan")])
def test_a_valid_scan_that_is_not_a_volume_is_named_as_what_it_is(tmp_path, pattern, name):
    path = write_vol(
        tmp_path / "scan.vol",
        _display(),
        _ramp_slo(),
        scale_x=SCALE_X,
        distance=DISTANCE,
        scale_z=SCALE_Z,
        slo_scale=SLO_SCALE,
        scan_pattern=pattern,
    )
    with pytest.raises(DataError, match=rf"scan pattern {pattern} \({name}\) is not a volume scan"):
        import_spectralis(path)

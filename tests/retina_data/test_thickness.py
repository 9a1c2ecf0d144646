"""Layer thickness maps and ETDRS sectors against hand-built eyes with known thickness."""

from __future__ import annotations

import numpy as np
import pytest

from retina_data.eye import Eye
from retina_data.thickness import (
    SECTORS,
    ascan_positions_mm,
    etdrs_errors,
    etdrs_grid,
    etdrs_table,
    find_fovea,
    thickness_map,
    thickness_maps,
)

D_H = 0.004  # 4 um per row
GRID = 61  # A-scans and B-scans, 0.1 mm apart: 6 mm x 6 mm, centre at (3, 3) mm


def _eye(rows_of_retina: np.ndarray, laterality: str = "OD") -> Eye:
    """An eye whose retina (label 1..11, one row each of labels 1..10, the rest RPE) is
    ``rows_of_retina [W, D]`` rows thick, starting at row 5."""
    height = 50
    labels = np.zeros((height, GRID, GRID), dtype=np.uint8)
    depth = np.arange(height)[:, None, None]
    inside = (depth >= 5) & (depth < 5 + rows_of_retina[None])
    layer = np.clip(depth - 4, 1, 11)
    labels[inside] = np.broadcast_to(layer, labels.shape)[inside]
    labels[(depth >= 5 + rows_of_retina[None])] = 12
    return Eye(
        oct=np.zeros(labels.shape, np.float32),
        spacing=(D_H, 0.1, 0.1),
        subject="s",
        laterality=laterality,
        labels=labels,
    )


def test_thickness_is_the_voxel_count_along_each_ascan_times_the_depth_spacing():
    labels = np.zeros((10, 3, 2), np.uint8)
    labels[2:7, 0, 0] = 1
    labels[2:4, 1, 1] = 1
    labels[4:5, 1, 1] = 6
    assert thickness_map(labels, 0.004, (1,)).tolist() == [[20.0, 0.0], [0.0, 8.0], [0.0, 0.0]]
    assert thickness_map(labels, 0.004, (1, 6))[1, 1] == pytest.approx(12.0)


def test_each_sector_mean_is_the_thickness_built_into_it():
    eye = _eye(np.full((GRID, GRID), 20))
    grid = etdrs_grid(eye, centre_mm=(3.0, 3.0))
    _x, _y = ascan_positions_mm(eye)
    rows = np.full((GRID, GRID), 20)
    value = {name: 20 + 2 * index for index, name in enumerate(SECTORS)}
    for index, name in enumerate(SECTORS):
        rows[grid.sector == index] = value[name]
    table = {row["group"]: row for row in etdrs_table(_eye(rows), grid)}
    for name in SECTORS:
        assert table["retina"][name] == pytest.approx(value[name] * D_H * 1000)
    assert table["RNFL"]["C"] == pytest.approx(D_H * 1000)  # one row of each inner layer


@pytest.mark.parametrize(("laterality", "nasal_x"), [("OD", 4.0), ("OS", 2.0)])
def test_nasal_lies_right_of_the_fovea_in_a_right_eye_and_left_in_a_left_eye(laterality, nasal_x):
    eye = _eye(np.full((GRID, GRID), 20), laterality)
    grid = etdrs_grid(eye, centre_mm=(3.0, 3.0))
    x, y = ascan_positions_mm(eye)
    at = lambda px, py: grid.sector[np.argmin(np.abs(x[:, 0] - px)), np.argmin(np.abs(y[0] - py))]  # noqa: E731
    assert SECTORS[at(nasal_x, 3.0)] == "N1"
    assert SECTORS[at(3.0, 2.0)] == "S1"  # superior: towards the first B-scan
    assert SECTORS[at(3.0, 5.5)] == "I2"
    assert SECTORS[at(3.0, 3.0)] == "C" and at(0.1, 0.1) == -1  # the corner lies outside the 6 mm disc


def test_the_fovea_is_found_at_the_thinnest_point_near_the_centre():
    x, y = np.meshgrid(np.arange(GRID) * 0.1, np.arange(GRID) * 0.1, indexing="ij")
    pit = 40 - 25 * np.exp(-((x - 3.4) ** 2 + (y - 2.7) ** 2) / (2 * 0.3**2))
    assert find_fovea(_eye(np.rint(pit).astype(int))) == pytest.approx((3.4, 2.7), abs=0.11)


def test_a_prediction_one_row_too_thick_everywhere_errs_by_one_row_in_every_sector():
    truth = _eye(np.full((GRID, GRID), 20))
    prediction = _eye(np.full((GRID, GRID), 21))
    rows = {row["group"]: row for row in etdrs_errors(prediction, truth)}
    assert all(rows["retina"][name] == pytest.approx(D_H * 1000) for name in SECTORS)
    assert all(rows["GCL"][name] == 0.0 for name in SECTORS)


def test_an_eye_without_labels_has_no_thickness():
    eye = Eye(oct=np.zeros((4, 3, 2), np.float32), spacing=(0.004, 0.1, 0.1), subject="s")
    with pytest.raises(Exception, match="no labels"):
        thickness_maps(eye)

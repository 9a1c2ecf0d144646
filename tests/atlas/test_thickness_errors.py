"""ETDRS thickness errors of registered atlas labels (10 classes) against flat layers of known thickness."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from atlas_registration.datasets.label_mapping import LabelMapping
from atlas_registration.evaluation import EvaluationRows, thickness_errors
from atlas_registration.fitting import EyeRegistration
from atlas_registration.reporting import write_tables
from retina_data.eye import Eye
from retina_data.thickness import SECTORS, relabelled_groups

D_H = 0.005  # 5 µm per row
GRID = 61  # A-scans and B-scans 0.1 mm apart: 6 mm x 6 mm, the fovea (flat retina) at the centre
ROWS = 4  # rows of each of the 9 retinal classes
HEIGHT = 60
MAPPING = LabelMapping.default()
NASAL_HALF = np.arange(GRID) > GRID // 2  # right of the centre in the picture


def flat_layers(top: int, extra_onl_rows: np.ndarray | int = 0) -> np.ndarray:
    """Atlas labels ``[H, W, D]``: background above row ``top``, classes 1..9 ``ROWS`` rows each below
    it, background (the choroid's class) underneath; ONL (class 6) ``extra_onl_rows [W]`` thicker at the
    expense of IS+EZ (class 7). The central A-scan's RNFL is a row thinner: the fovea."""
    depth = np.arange(HEIGHT)[:, None, None]
    boundaries = np.broadcast_to(top + ROWS * np.arange(10)[:, None, None], (10, GRID, GRID)).copy()
    boundaries[0, GRID // 2, GRID // 2] += 1  # the ILM, so the grid is centred on the scan centre
    boundaries[6] += np.broadcast_to(np.asarray(extra_onl_rows), (GRID,))[:, None]  # the top of IS+EZ
    labels = np.zeros((HEIGHT, GRID, GRID), dtype=np.uint8)
    for target in range(1, 10):
        labels[(depth >= boundaries[target - 1]) & (depth < boundaries[target])] = target
    return labels


def _eye(labels: np.ndarray, laterality: str = "OD") -> Eye:
    return Eye(
        oct=np.zeros(labels.shape, np.float32),
        spacing=(D_H, 0.1, 0.1),
        subject="s01",
        laterality=laterality,
        labels=labels,
    )


def _registration(labels: np.ndarray) -> EyeRegistration:
    return EyeRegistration(labels, np.zeros(labels.shape, np.float32), np.zeros((3, *labels.shape), np.float32), 1.0)


def test_the_atlas_groups_are_the_retina_and_its_nine_classes_with_the_photoreceptor_bands_merged():
    groups = relabelled_groups(MAPPING.table, MAPPING.names)
    assert groups["retina"] == tuple(range(1, 10))  # ILM to Bruch's membrane; background and choroid left out
    assert groups["IS+EZ"] == (7,) and groups["OS+IZ"] == (8,) and groups["RPE"] == (9,)
    assert list(groups) == ["retina", *MAPPING.names[1:]]


def test_layers_moved_as_a_whole_have_no_thickness_error():
    truth = _eye(flat_layers(top=6))
    rows = thickness_errors(_registration(flat_layers(top=9)), truth, MAPPING, flip_os=False)
    assert {row["group"] for row in rows} == {"retina", *MAPPING.names[1:]}
    assert all(row[sector] == 0.0 for row in rows for sector in SECTORS)


def test_a_boundary_moved_by_two_rows_errs_by_two_rows_in_both_layers_beside_it_only():
    truth = _eye(flat_layers(top=6))
    rows = {
        row["group"]: row
        for row in thickness_errors(_registration(flat_layers(top=9, extra_onl_rows=2)), truth, MAPPING, flip_os=False)
    }
    for group, row in rows.items():
        expected = 2 * D_H * 1000 if group in ("ONL", "IS+EZ") else 0.0
        assert [row[sector] for sector in SECTORS] == pytest.approx([expected] * len(SECTORS)), group


@pytest.mark.parametrize(("flip_os", "erring"), [(False, ("T1", "T2")), (True, ("N1", "N2"))])
def test_a_left_eye_mirrored_for_the_atlas_is_scored_in_its_own_orientation(flip_os, erring):
    """An error on the right of the picture as the atlas holds the eye: temporal in a left eye as it was
    recorded, nasal in one the atlas mirrored (``DATA.FLIP_OS``)."""
    truth = _eye(flat_layers(top=6), "OS")
    rows = {
        row["group"]: row
        for row in thickness_errors(
            _registration(flat_layers(top=6, extra_onl_rows=np.where(NASAL_HALF, 2, 0))), truth, MAPPING, flip_os
        )
    }
    onl = rows["ONL"]
    assert all(onl[sector] > 0 for sector in erring)
    assert all(onl[sector] == 0.0 for sector in ("N1", "N2", "T1", "T2") if sector not in erring)
    assert onl[erring[1]] == pytest.approx(2 * D_H * 1000, rel=0.05)  # the outer ring lies off the middle column


def test_the_evaluation_writes_the_thickness_tables_beside_the_metric_tables(tmp_path):
    truth = _eye(flat_layers(top=6))
    key = {"eye_id": truth.eye_id, "method": "ginr", "factor": 1, "bscans": GRID}
    rows = EvaluationRows(
        ours=[{**key, "dice_mean": 1.0}],
        reference=[{**key, "dice_mean": 1.0}],
        thickness=[
            {**key, **row}
            for row in thickness_errors(_registration(flat_layers(top=9, extra_onl_rows=2)), truth, MAPPING, False)
        ],
    )
    write_tables(rows, tmp_path, factors=(1,), figures=False)
    with open(tmp_path / "metrics_all_thickness.csv", newline="") as handle:
        written = {row["group"]: row for row in csv.DictReader(handle)}
    assert float(written["ONL"]["C"]) == pytest.approx(10.0) and float(written["GCL"]["C"]) == 0.0
    table = (tmp_path / "summary_thickness.md").read_text()
    assert "| ginr | 1 | ONL | 1 | 10.00 |" in table

"""The retina phantom: anatomy, vessels, pathology, determinism and the written tree."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from retina_data.config import from_dict, read_yaml
from retina_data.errors import ConfigError, OutputExistsError
from retina_data.eye import Eye
from retina_data.labels import FLUID_LABEL, NUM_LAYER_CLASSES
from retina_data.phantom import (
    PhantomConfig,
    flattened_bm_row,
    make_eye,
    make_population,
    make_scanned_eye,
    paper_shape_config,
    pathology_eyes,
    write_phantom,
)
from retina_data.tree import list_eyes, read_dataset

SMALL = PhantomConfig(n_subjects=2, shape=(96, 64, 32))
DEEP = PhantomConfig(n_subjects=2, shape=(96, 64, 32), extent_mm=(1.2, 6.0, 6.0), bm_depth_fraction=0.6)
"""A deeper scan with room for a strong tilt and curvature before flattening."""
OUTER = (8, 11)
"""EZ .. RPE: the bright outer layers where vessel shadows show best."""


@pytest.fixture(scope="module")
def eye() -> Eye:
    return make_eye(SMALL, 0, "OD")


@pytest.fixture(scope="module")
def sick_eye() -> Eye:
    return make_eye(PhantomConfig(n_subjects=2, shape=(96, 64, 32), pathology_fraction=1.0), 0, "OD")


def retina_thickness_mm(eye: Eye) -> np.ndarray:
    """ILM to BM ``[W, D]`` from the labels."""
    inside = (eye.labels >= 1) & (eye.labels <= 11)
    return inside.sum(axis=0) * eye.spacing[0]


def outer_layer_mean(eye: Eye) -> np.ndarray:
    """Mean OCT intensity of the EZ .. RPE in each A-scan ``[W, D]``."""
    outer = (eye.labels >= OUTER[0]) & (eye.labels <= OUTER[1])
    return (eye.oct * outer).sum(axis=0) / outer.sum(axis=0)


def scan_coordinates(eye: Eye) -> tuple[np.ndarray, np.ndarray]:
    """``x, y [W, D]``: mm from the scan centre along the B-scan and the slow axis."""
    width = eye.shape[1]
    x = (np.arange(width) - (width - 1) / 2) * eye.spacing[1]
    return np.meshgrid(x, eye.bscan_positions - eye.bscan_positions.mean(), indexing="ij")


def fovea_index(eye: Eye) -> tuple[int, int]:
    """``(w, d)`` of the A-scan nearest the foveal centre."""
    x, y = scan_coordinates(eye)
    distance = np.hypot(x - eye.meta["fovea_mm"][0], y - eye.meta["fovea_mm"][1])
    return np.unravel_index(np.argmin(distance), distance.shape)


def test_eye_has_the_configured_shape_types_and_ranges(eye: Eye) -> None:
    assert eye.shape == (96, 64, 32) and eye.oct.dtype == np.float32 and eye.labels.dtype == np.uint8
    assert eye.slo.shape == (64, 32) and eye.slo.dtype == np.float32
    assert 0.0 <= eye.oct.min() and eye.oct.max() <= 1.0 and 0.0 <= eye.slo.min() and eye.slo.max() <= 1.0
    assert eye.spacing == pytest.approx((0.89 / 96, 6.0 / 64, 6.0 / 32))
    assert eye.eye_id == "sub001_OD"


def test_labels_never_decrease_down_an_ascan(eye: Eye) -> None:
    assert np.all(np.diff(eye.labels.astype(np.int16), axis=0) >= 0)


def test_all_thirteen_classes_are_present(eye: Eye) -> None:
    assert set(np.unique(eye.labels)) == set(range(NUM_LAYER_CLASSES))


def test_retina_thickness_is_realistic(eye: Eye) -> None:
    thickness = retina_thickness_mm(eye)
    assert 0.15 < thickness.min() and thickness.max() < 0.45


def test_bruchs_membrane_is_one_flat_row(eye: Eye) -> None:
    first_choroid_row = np.argmax(eye.labels == NUM_LAYER_CLASSES - 1, axis=0)
    assert np.unique(first_choroid_row).size == 1


@pytest.mark.parametrize(("tilt", "curvature"), [(0.0, 0.0), (0.2, 0.0), (0.0, 0.15), (0.2, 0.1)])
def test_bruchs_membrane_is_flat_for_any_tilt_and_curvature(tilt: float, curvature: float) -> None:
    cfg = replace(DEEP, tilt_mm=tilt, curvature_mm=curvature, shape=(64, 32, 16))
    eye = make_eye(cfg, 1, "OS")
    first_choroid_row = np.argmax(eye.labels == NUM_LAYER_CLASSES - 1, axis=0)
    assert np.all(first_choroid_row == flattened_bm_row(cfg))
    assert eye.meta["flatten_target_row"] == flattened_bm_row(cfg)


def test_without_tilt_and_curvature_flattening_moves_nothing() -> None:
    cfg = replace(SMALL, tilt_mm=0.0, curvature_mm=0.0)
    scanned, bm_rows = make_scanned_eye(cfg, 0, "OD")
    assert np.all(bm_rows == flattened_bm_row(cfg))
    stored = make_eye(cfg, 0, "OD")
    np.testing.assert_array_equal(stored.oct, scanned.oct)
    np.testing.assert_array_equal(stored.labels, scanned.labels)


def test_tilted_eye_lies_across_the_scan_before_flattening() -> None:
    scanned, bm_rows = make_scanned_eye(replace(DEEP, tilt_mm=0.2), 0, "OD")
    assert bm_rows.max() - bm_rows.min() > 5
    first_choroid_row = np.argmax(scanned.labels == NUM_LAYER_CLASSES - 1, axis=0)
    np.testing.assert_array_equal(first_choroid_row, bm_rows)


def test_flattening_a_tilted_eye_leaves_an_empty_fill_at_the_image_edges() -> None:
    cfg = replace(DEEP, tilt_mm=0.2)
    _, bm_rows = make_scanned_eye(cfg, 0, "OD")
    eye = make_eye(cfg, 0, "OD")
    shift = flattened_bm_row(cfg) - bm_rows
    row = np.arange(eye.shape[0])[:, None, None]
    filled = (row < shift[None]) | (row >= eye.shape[0] + shift[None])
    assert filled[-1].sum() > 0 and filled[0].sum() > 0  # A-scans moved up and down
    assert np.all(eye.oct[filled] == 0.0)
    assert np.all(eye.labels[filled & (row < eye.shape[0] // 2)] == 0)
    assert np.all(eye.labels[filled & (row >= eye.shape[0] // 2)] == NUM_LAYER_CLASSES - 1)


def test_rolloff_dims_the_ascans_that_lay_deeper_before_flattening() -> None:
    cfg = replace(DEEP, tilt_mm=0.2)
    _, bm_rows = make_scanned_eye(cfg, 0, "OD")
    short_rolloff = make_eye(replace(cfg, rolloff_mm=0.5), 0, "OD")
    dimming = outer_layer_mean(short_rolloff) - outer_layer_mean(make_eye(cfg, 0, "OD"))
    assert np.corrcoef(bm_rows.ravel(), dimming.ravel())[0, 1] < -0.4


def test_fovea_is_thinner_than_the_rest(eye: Eye) -> None:
    thickness = retina_thickness_mm(eye)
    w, d = fovea_index(eye)
    assert thickness[w, d] < 0.9 * np.median(thickness)


def test_inner_layers_vanish_at_the_fovea(eye: Eye) -> None:
    inner = ((eye.labels >= 1) & (eye.labels <= 5)).sum(axis=0) * eye.spacing[0]
    w, d = fovea_index(eye)
    assert inner[w, d] < 0.03 and np.median(inner) > 0.1


def test_vessels_are_dark_in_the_slo_and_shadow_the_outer_layers(eye: Eye) -> None:
    outer = outer_layer_mean(eye)
    dark = eye.slo < np.percentile(eye.slo, 10)
    bright = eye.slo > np.median(eye.slo)
    assert outer[dark].mean() < outer[bright].mean() - 0.05


def test_slo_predicts_the_shadows_in_unseen_bscans(eye: Eye) -> None:
    gaps = np.setdiff1d(np.arange(eye.shape[2]), np.arange(eye.shape[2])[::4])
    sparse = eye.select_bscans(gaps)
    darkness = 1.0 - eye.slo_at(sparse.bscan_positions)
    shadow = -outer_layer_mean(sparse)
    assert np.corrcoef(darkness.ravel(), shadow.ravel())[0, 1] > 0.3


def test_vessels_differ_between_bscans(eye: Eye) -> None:
    neighbours = np.corrcoef(eye.slo[:, 10], eye.slo[:, 11])[0, 1]
    assert neighbours < 0.95


def test_same_seed_gives_the_same_eye(eye: Eye) -> None:
    again = make_eye(SMALL, 0, "OD")
    np.testing.assert_array_equal(again.oct, eye.oct)
    np.testing.assert_array_equal(again.labels, eye.labels)
    np.testing.assert_array_equal(again.slo, eye.slo)
    assert again.meta == eye.meta


def test_another_seed_gives_another_eye(eye: Eye) -> None:
    other = make_eye(PhantomConfig(n_subjects=2, shape=(96, 64, 32), seed=1), 0, "OD")
    assert not np.array_equal(other.labels, eye.labels)


def test_an_eye_alone_equals_the_same_eye_in_the_population() -> None:
    cfg = PhantomConfig(n_subjects=2, shape=(48, 16, 8))
    population = make_population(cfg)
    assert [e.eye_id for e in population] == ["sub001_OD", "sub001_OS", "sub002_OD", "sub002_OS"]
    np.testing.assert_array_equal(population[3].oct, make_eye(cfg, 1, "OS").oct)


def test_left_eye_mirrors_the_right_eye(eye: Eye) -> None:
    left = make_eye(SMALL, 0, "OS")
    assert left.meta["fovea_mm"][0] == pytest.approx(-eye.meta["fovea_mm"][0], abs=0.25)
    mirrored = retina_thickness_mm(left)[::-1]
    right = retina_thickness_mm(eye)
    assert np.corrcoef(mirrored.ravel(), right.ravel())[0, 1] > 0.8
    assert not np.array_equal(mirrored, right)


def test_nerve_fibre_layer_is_thicker_nasally(eye: Eye) -> None:
    rnfl = (eye.labels == 1).sum(axis=0)
    width = eye.shape[1]
    nasal, temporal = rnfl[-width // 4 :], rnfl[: width // 4]  # right eye: the disc lies towards +W
    assert nasal.mean() > 1.5 * temporal.mean()


def test_healthy_anatomy_is_unchanged_by_the_noise_settings(eye: Eye) -> None:
    quiet = make_eye(PhantomConfig(n_subjects=2, shape=(96, 64, 32), noise_floor=0.0, speckle_looks=16), 0, "OD")
    np.testing.assert_array_equal(quiet.labels, eye.labels)


def test_pathology_eyes_hold_dark_fluid(sick_eye: Eye) -> None:
    fluid = sick_eye.labels == FLUID_LABEL
    rpe = sick_eye.labels == 11
    assert fluid.sum() > 0
    assert sick_eye.oct[fluid].mean() < 0.5 * sick_eye.oct[rpe].mean()


def test_fluid_lifts_the_retina_above_it(eye: Eye, sick_eye: Eye) -> None:
    assert sick_eye.meta["pathology"] and not eye.meta["pathology"]
    lifted = (sick_eye.labels == FLUID_LABEL).any(axis=0)
    ilm_healthy = np.argmax(eye.labels > 0, axis=0)
    ilm_sick = np.argmax(sick_eye.labels > 0, axis=0)
    assert np.all(ilm_sick <= ilm_healthy)
    assert np.mean(ilm_healthy[lifted] - ilm_sick[lifted]) > 2
    dome = sick_eye.meta["fluid"]
    x, y = scan_coordinates(sick_eye)
    outside = np.hypot(x - dome["centre_mm"][0], y - dome["centre_mm"][1]) > dome["radius_mm"]
    np.testing.assert_array_equal(ilm_sick[outside], ilm_healthy[outside])


def test_fluid_lies_between_photoreceptors_and_rpe(sick_eye: Eye) -> None:
    labels = sick_eye.labels.astype(np.int16)
    above = np.roll(labels, 1, axis=0)[1:][labels[1:] == FLUID_LABEL]
    below = np.roll(labels, -1, axis=0)[:-1][labels[:-1] == FLUID_LABEL]
    photoreceptors = {8, 9, 10}  # a layer thinner than a row may hold no row centre
    assert set(np.unique(above)) <= photoreceptors | {FLUID_LABEL}
    assert set(np.unique(below)) <= {11, FLUID_LABEL}


@pytest.mark.parametrize(("fraction", "count"), [(0.0, 0), (0.05, 1), (0.3, 3), (1.0, 10)])
def test_pathology_fraction_picks_that_share_of_eyes(fraction: float, count: int) -> None:
    cfg = PhantomConfig(n_subjects=5, pathology_fraction=fraction)
    assert len(pathology_eyes(cfg)) == count
    assert pathology_eyes(cfg) == pathology_eyes(PhantomConfig(n_subjects=5, pathology_fraction=fraction))


def test_paper_shape_config_has_the_paper_shape() -> None:
    cfg = paper_shape_config(n_subjects=3)
    assert cfg.shape == (230, 496, 512) and cfg.n_subjects == 3
    assert cfg.spacing[0] == pytest.approx(0.00387, rel=1e-3)


@pytest.mark.parametrize(
    "bad",
    [
        {"n_subjects": 0},
        {"shape": (8, 16, 16)},
        {"shape": (64, 16)},
        {"extent_mm": (0.89, -6.0, 6.0)},
        {"pathology_fraction": 1.5},
        {"seed": -1},
        {"speckle_looks": 0},
        {"vessel_shadow": 1.2},
        {"extent_mm": (0.5, 6.0, 6.0)},
        {"tilt_mm": 0.2},
        {"curvature_mm": 0.3},
    ],
)
def test_config_rejects_impossible_values(bad: dict) -> None:
    with pytest.raises(ConfigError):
        PhantomConfig(**bad)


def test_config_loads_from_a_yaml_mapping() -> None:
    cfg = from_dict({"shape": [64, 32, 8], "seed": 3}, PhantomConfig)
    assert cfg.shape == (64, 32, 8) and cfg.seed == 3


def test_write_phantom_round_trips_through_the_tree(tmp_path: Path) -> None:
    cfg = PhantomConfig(n_subjects=1, shape=(48, 16, 8), pathology_fraction=0.5)
    ids = write_phantom(tmp_path / "phantom", cfg, progress=False)
    assert ids == ["sub001_OD", "sub001_OS"]
    for written, read in zip(make_population(cfg), read_dataset(tmp_path / "phantom")):
        assert read.eye_id == written.eye_id
        np.testing.assert_array_equal(read.oct, written.oct)
        np.testing.assert_array_equal(read.labels, written.labels)
        np.testing.assert_array_equal(read.slo, written.slo)
        np.testing.assert_allclose(read.bscan_positions, written.bscan_positions)
        assert read.spacing == pytest.approx(written.spacing)
    info = read_yaml(tmp_path / "phantom" / "dataset.yaml")
    assert info["provenance"]["config"]["shape"] == [48, 16, 8]
    assert info["label_names"][FLUID_LABEL] == "SRF"


def test_write_phantom_twice_gives_identical_bytes(tmp_path: Path) -> None:
    cfg = PhantomConfig(n_subjects=1, shape=(48, 16, 8))
    write_phantom(tmp_path / "a", cfg, progress=False)
    write_phantom(tmp_path / "b", cfg, progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 17  # per eye: 3 volumes, 3 sidecars, 2 label tables; dataset.yaml
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_write_phantom_refuses_a_folder_with_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    cfg = PhantomConfig(n_subjects=1, shape=(48, 16, 8))
    with pytest.raises(OutputExistsError):
        write_phantom(tmp_path, cfg, progress=False)
    assert write_phantom(tmp_path, cfg, overwrite=True, progress=False) == ["sub001_OD", "sub001_OS"]


def test_overwriting_a_larger_phantom_removes_its_extra_subjects_only(tmp_path: Path) -> None:
    write_phantom(tmp_path, PhantomConfig(n_subjects=2, shape=(48, 16, 8)), progress=False)
    (tmp_path / "notes.txt").write_text("keep me")
    write_phantom(tmp_path, PhantomConfig(n_subjects=1, shape=(48, 16, 8)), overwrite=True, progress=False)
    assert list_eyes(tmp_path) == [("sub001", "OD"), ("sub001", "OS")]
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_overwriting_a_folder_that_is_not_a_phantom_removes_nothing(tmp_path: Path) -> None:
    (tmp_path / "sub007").mkdir()
    (tmp_path / "sub007" / "notes.txt").write_text("a user's subject folder")
    write_phantom(tmp_path, PhantomConfig(n_subjects=1, shape=(48, 16, 8)), overwrite=True, progress=False)
    assert (tmp_path / "sub007" / "notes.txt").is_file()

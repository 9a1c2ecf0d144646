"""The median atlas: known lower medians of intensities and label indices, optional OS mirroring, slabs,
lazy reading from a tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic_atlas_eyes import SPACING, layered_eye

from atlas_registration.datasets.label_mapping import LabelMapping
from atlas_registration.median_atlas import (
    ATLAS_INTENSITY_FILE,
    ATLAS_LABELS_FILE,
    lower_median,
    median_atlas,
    save_atlas_nifti,
    to_od_orientation,
)
from retina_data.errors import DataError, OutputExistsError
from retina_data.eye import Eye
from retina_data.metrics import mean_dice
from retina_data.nifti import read_nifti
from retina_data.phantom import PhantomConfig, make_eye, make_population, write_phantom
from retina_data.tree import list_eyes, write_eye

SHAPE = (6, 5, 4)


def constant_eye(
    name: str,
    value: float,
    label: int,
    laterality: str = "OD",
    shape: tuple[int, int, int] = SHAPE,
    spacing: tuple[float, float, float] = SPACING,
) -> Eye:
    return Eye(
        oct=np.full(shape, value, dtype=np.float32),
        spacing=spacing,
        subject=name,
        laterality=laterality,
        labels=np.full(shape, label, dtype=np.uint8),
    )


def test_median_of_three_constant_volumes() -> None:
    atlas = median_atlas([constant_eye("a", 1.0, 0), constant_eye("b", 5.0, 0), constant_eye("c", 3.0, 0)])
    np.testing.assert_array_equal(atlas.intensity, np.full(SHAPE, 3.0, dtype=np.float32))
    assert atlas.intensity.dtype == np.float32


def test_median_is_taken_per_voxel() -> None:
    rng = np.random.default_rng(1)
    volumes = rng.random((5, *SHAPE), dtype=np.float32)
    eyes = [
        Eye(oct=v, spacing=SPACING, subject=f"s{i}", labels=np.zeros(SHAPE, np.uint8)) for i, v in enumerate(volumes)
    ]
    np.testing.assert_array_equal(median_atlas(eyes).intensity, np.median(volumes, axis=0))


def test_atlas_labels_are_the_median_label_index_of_three_eyes() -> None:
    # per voxel the labels of three eyes: a majority vote would give 1, 2 and 0 (the first of
    # three different labels); the median of the indices gives 3, 3 and 4
    labels = np.array([[1, 3, 0], [3, 2, 4], [9, 5, 8]], dtype=np.uint8)  # [eye, voxel]
    eyes = [
        Eye(oct=np.zeros((1, 1, 3), np.float32), spacing=SPACING, subject=f"s{i}", labels=row.reshape(1, 1, 3))
        for i, row in enumerate(labels)
    ]
    atlas = median_atlas(eyes)
    assert atlas.labels.dtype == np.uint8
    np.testing.assert_array_equal(atlas.labels.ravel(), [3, 3, 4])


def test_lower_median_of_an_even_count_is_the_smaller_middle_value() -> None:
    stack = np.array([[1.0, 7.0], [4.0, 2.0], [3.0, 9.0], [8.0, 5.0]], dtype=np.float32)  # [N=4, 2]
    np.testing.assert_array_equal(lower_median(stack), [3.0, 5.0])  # np.median would give 3.5 and 6.0
    eyes = [constant_eye(f"s{i}", v, label) for i, (v, label) in enumerate([(1.0, 2), (4.0, 6), (3.0, 5), (8.0, 1)])]
    atlas = median_atlas(eyes)
    np.testing.assert_array_equal(atlas.intensity, 3.0)
    np.testing.assert_array_equal(atlas.labels, 2)


def test_eyes_are_taken_as_stored_unless_mirroring_is_asked_for() -> None:
    left = layered_eye("sub001", "OS")
    np.testing.assert_array_equal(median_atlas([left]).labels, left.labels)


def test_left_eyes_are_mirrored_to_right_orientation() -> None:
    right, left = layered_eye("sub001", "OD"), layered_eye("sub001", "OS")
    atlas = median_atlas([right, left, right], mirror_os=True)
    np.testing.assert_array_equal(atlas.labels, right.labels)
    np.testing.assert_array_equal(median_atlas([left], mirror_os=True).intensity, left.oct[:, ::-1])


def test_od_orientation_flips_only_left_eyes_and_undoes_itself() -> None:
    volume = np.arange(24).reshape(2, 3, 4)
    np.testing.assert_array_equal(to_od_orientation(volume, "OD"), volume)
    np.testing.assert_array_equal(to_od_orientation(volume, "OS")[:, 0], volume[:, 2])
    np.testing.assert_array_equal(to_od_orientation(to_od_orientation(volume, "OS"), "OS"), volume)


def test_slab_size_does_not_change_the_atlas() -> None:
    eyes = [layered_eye(f"sub{i:03d}", lat, seed=i, shift=i) for i in range(3) for lat in ("OD", "OS")]
    whole = median_atlas(eyes)
    one_bscan = median_atlas(eyes, memory_mb=1e-6)
    np.testing.assert_array_equal(one_bscan.intensity, whole.intensity)
    np.testing.assert_array_equal(one_bscan.labels, whole.labels)


def test_label_mapping_is_applied_before_the_median() -> None:
    eyes = [constant_eye("a", 0.0, 12), constant_eye("b", 0.0, 12), constant_eye("c", 0.0, 11)]
    atlas = median_atlas(eyes, label_mapping=LabelMapping.default())
    np.testing.assert_array_equal(atlas.labels, 0)  # choroid (12) is background: median of 0, 0, 9


def test_eye_folders_are_read_lazily_with_the_same_result(tmp_path: Path) -> None:
    eyes = [layered_eye(f"sub{i:03d}", lat, seed=i, shift=i) for i in range(2) for lat in ("OD", "OS")]
    for eye in eyes:
        write_eye(tmp_path, eye)
    folders = [tmp_path / eye.subject / eye.laterality for eye in eyes]
    from_disk = median_atlas(folders, memory_mb=1e-6)
    in_memory = median_atlas(eyes)
    np.testing.assert_array_equal(from_disk.intensity, in_memory.intensity)
    np.testing.assert_array_equal(from_disk.labels, in_memory.labels)
    assert from_disk.eye_ids == ("sub000_OD", "sub000_OS", "sub001_OD", "sub001_OS")
    np.testing.assert_allclose(from_disk.spacing, SPACING, rtol=1e-6)


def test_eyes_of_different_shape_are_refused() -> None:
    with pytest.raises(DataError, match=r"eye b_OD has shape \(6, 5, 3\)"):
        median_atlas([constant_eye("a", 0.0, 0), constant_eye("b", 0.0, 0, shape=(6, 5, 3))])


def test_eyes_of_different_spacing_are_refused() -> None:
    with pytest.raises(DataError, match="voxel size"):
        median_atlas([constant_eye("a", 0.0, 0), constant_eye("b", 0.0, 0, spacing=(0.1, 0.1, 0.1))])


def test_an_eye_without_labels_is_refused() -> None:
    eye = Eye(oct=np.zeros(SHAPE, np.float32), spacing=SPACING, subject="a")
    with pytest.raises(DataError, match="a_OD: has no labels"):
        median_atlas([eye])


def test_a_folder_that_is_not_an_eye_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="OD or OS"):
        median_atlas([tmp_path / "sub001" / "left"])


def test_saved_atlas_round_trips_with_its_spacing(tmp_path: Path) -> None:
    atlas = median_atlas([layered_eye()])
    save_atlas_nifti(atlas, tmp_path)
    intensity, labels = read_nifti(tmp_path / ATLAS_INTENSITY_FILE), read_nifti(tmp_path / ATLAS_LABELS_FILE)
    np.testing.assert_array_equal(intensity.array, atlas.intensity)
    np.testing.assert_array_equal(labels.array, atlas.labels)
    assert labels.array.dtype == np.uint8
    np.testing.assert_allclose(intensity.spacing, SPACING)


def test_saving_over_an_atlas_needs_overwrite(tmp_path: Path) -> None:
    atlas = median_atlas([layered_eye()])
    save_atlas_nifti(atlas, tmp_path)
    with pytest.raises(OutputExistsError):
        save_atlas_nifti(atlas, tmp_path)
    save_atlas_nifti(atlas, tmp_path, spacing=(1.0, 1.0, 1.0), overwrite=True)
    np.testing.assert_allclose(read_nifti(tmp_path / ATLAS_LABELS_FILE).spacing, (1.0, 1.0, 1.0))


PHANTOM = PhantomConfig(n_subjects=2, shape=(48, 24, 8))


def test_phantom_tree_read_lazily_gives_the_in_memory_atlas(tmp_path: Path) -> None:
    write_phantom(tmp_path / "phantom", PHANTOM, progress=False)
    folders = [tmp_path / "phantom" / s / lat for s, lat in list_eyes(tmp_path / "phantom")]
    from_disk = median_atlas(folders, label_mapping=LabelMapping.default(), memory_mb=1e-6)
    in_memory = median_atlas(make_population(PHANTOM), label_mapping=LabelMapping.default())
    np.testing.assert_array_equal(from_disk.intensity, in_memory.intensity)
    np.testing.assert_array_equal(from_disk.labels, in_memory.labels)
    assert from_disk.labels.max() == 9


def test_mirrored_left_eyes_match_the_right_eyes_of_phantom_subjects_better() -> None:
    mirrored, as_stored = [], []
    for subject in range(PHANTOM.n_subjects):
        right, left = make_eye(PHANTOM, subject, "OD"), make_eye(PHANTOM, subject, "OS")
        mirrored.append(mean_dice(to_od_orientation(left.labels, "OS"), right.labels, 14))
        as_stored.append(mean_dice(left.labels, right.labels, 14))
    assert np.mean(mirrored) > np.mean(as_stored) + 0.01

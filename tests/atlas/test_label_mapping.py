"""The 13 (+ fluid) -> 10 class mapping of the atlas: the reference's table, config validation, relabelling."""

from __future__ import annotations

import numpy as np
import pytest

from atlas_registration.datasets.label_mapping import LabelMapping
from retina_data.errors import ConfigError, DataError
from retina_data.labels import FLUID_LABEL


def identity_plus_fluid(fluid_target: int = 12) -> dict[int, int]:
    table = {label: label for label in range(13)}
    table[FLUID_LABEL] = fluid_target
    return table


def test_default_mapping_has_ten_named_classes() -> None:
    mapping = LabelMapping.default()
    assert mapping.num_classes == 10
    assert mapping.names == ("background", "RNFL", "GCL", "IPL", "INL", "OPL", "ONL", "IS+EZ", "OS+IZ", "RPE")


def test_default_mapping_is_the_reference_table() -> None:
    # the reference: 1..6 kept, {7, 8} -> 7, {9, 10} -> 8, 11 -> 9, every other value (12, fluid) -> 0
    expected = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 7, 9: 8, 10: 8, 11: 9, 12: 0, FLUID_LABEL: 0}
    assert LabelMapping.default().table == expected


def test_apply_relabels_every_voxel_and_keeps_the_shape() -> None:
    labels = np.arange(14, dtype=np.uint8).reshape(7, 2, 1)
    mapped = LabelMapping.default().apply(labels)
    assert mapped.shape == labels.shape and mapped.dtype == np.uint8
    np.testing.assert_array_equal(mapped.ravel(), [0, 1, 2, 3, 4, 5, 6, 7, 7, 8, 8, 9, 0, 0])


def test_config_keys_may_be_yaml_strings() -> None:
    mapping = LabelMapping.from_config({str(k): v for k, v in identity_plus_fluid().items()})
    assert mapping.num_classes == 13
    assert mapping.apply(np.array([FLUID_LABEL]))[0] == 12


def test_fluid_as_its_own_class_is_named_after_it() -> None:
    mapping = LabelMapping.from_config(identity_plus_fluid(fluid_target=13))
    assert mapping.num_classes == 14
    assert mapping.names[13] == "SRF" and mapping.names[7] == "IS"


def test_merged_classes_get_joined_names_without_the_fluid() -> None:
    table = dict(LabelMapping.default().table)
    names = LabelMapping.from_config(table).names
    assert names[7] == "IS+EZ" and names[0] == "background+choroid"  # fluid (13 -> 0) left out


def test_a_missing_source_label_is_refused() -> None:
    table = identity_plus_fluid()
    del table[FLUID_LABEL]
    with pytest.raises(ConfigError, match=r"\[13\] are not mapped"):
        LabelMapping.from_config(table)


def test_targets_must_be_contiguous() -> None:
    table = identity_plus_fluid()
    table[12] = 20
    table[FLUID_LABEL] = 20
    with pytest.raises(ConfigError, match="contiguous"):
        LabelMapping.from_config(table)


def test_an_unknown_source_label_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown source label 14"):
        LabelMapping.from_config({**identity_plus_fluid(), 14: 0})


@pytest.mark.parametrize("bad", [1.5, "seven", True, None])
def test_a_non_integer_target_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="integer label"):
        LabelMapping.from_config({**identity_plus_fluid(), 3: bad})


def test_names_must_match_the_number_of_classes() -> None:
    with pytest.raises(ConfigError, match="3 class names given for 10"):
        LabelMapping.from_config(None, names=["a", "b", "c"])


def test_labels_outside_the_source_range_are_a_data_error() -> None:
    with pytest.raises(DataError, match=r"0..13"):
        LabelMapping.default().apply(np.array([0, 5, 14]))

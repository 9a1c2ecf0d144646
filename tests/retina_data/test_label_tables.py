"""Label tables for viewers: written beside every label volume, and they parse back to the names."""

from __future__ import annotations

import pytest
from eye_builders import build_eye

from retina_data.errors import DataError
from retina_data.label_tables import (
    ITKSNAP_FILE,
    SLICER_FILE,
    read_itksnap_labels,
    read_slicer_colours,
    write_label_tables,
)
from retina_data.labels import label_names
from retina_data.tree import eye_files, write_eye


def test_both_tables_give_back_every_name_with_one_distinct_colour_per_label(tmp_path):
    names = label_names(with_fluid=True)
    write_label_tables(tmp_path, names)
    itksnap = read_itksnap_labels(tmp_path / ITKSNAP_FILE)
    slicer = read_slicer_colours(tmp_path / SLICER_FILE)
    assert [itksnap[i][0] for i in range(len(names))] == names
    assert [slicer[i][0] for i in range(len(names))] == names  # no blank in our names to replace
    assert itksnap[0][1] == (0, 0, 0)
    colours = [itksnap[i][1] for i in range(len(names))]
    assert len(set(colours)) == len(names) and colours == [slicer[i][1] for i in range(len(names))]


def test_names_with_blanks_and_quotes_survive_in_each_format(tmp_path):
    write_label_tables(tmp_path, ["background", 'inner "plexiform" layer'])
    assert read_itksnap_labels(tmp_path / ITKSNAP_FILE)[1][0] == "inner 'plexiform' layer"
    assert read_slicer_colours(tmp_path / SLICER_FILE)[1][0] == 'inner_"plexiform"_layer'


def test_an_eye_written_to_the_tree_gets_the_tables_beside_its_labels(tmp_path):
    eye = build_eye()
    write_eye(tmp_path, eye)
    folder = eye_files(tmp_path, eye.subject, eye.laterality).labels.parent
    assert read_itksnap_labels(folder / ITKSNAP_FILE)[12][0] == "choroid"
    assert 13 not in read_slicer_colours(folder / SLICER_FILE)  # no fluid in this eye


def test_a_malformed_row_is_named_with_its_line(tmp_path):
    (tmp_path / "bad.txt").write_text("# header\n  1 255 0 0 1 1 1 no-quotes\n")
    with pytest.raises(DataError, match=r"bad.txt: line 2"):
        read_itksnap_labels(tmp_path / "bad.txt")

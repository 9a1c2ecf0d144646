"""``python -m retina_data``: every command's help, refusals, exit codes and validate's report."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from faults import rewrite_array, set_header_zoom, truncate
from heyex_vol import write_vol
from heyex_xml import write_xml_export
from PIL import Image

from retina_data.__main__ import main
from retina_data.containers import read_container
from retina_data.folds import read_folds
from retina_data.tree import eye_files, list_eyes, read_eye

COMMANDS = [
    "phantom",
    "validate",
    "import",
    "import spectralis",
    "import stack",
    "import dicom",
    "import duke-amd",
    "import duke-dme",
    "import retouch",
    "subsample",
    "folds",
    "export-npz",
    "info",
    "figure",
    "thickness",
]


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


@pytest.fixture(scope="module")
def phantom_tree(tmp_path_factory):
    """A tiny phantom (3 subjects of 32 x 16 x 8) written once through the command line."""
    out = tmp_path_factory.mktemp("phantom") / "data"
    assert run(["phantom", str(out), "--subjects", "3", "--shape", "32", "16", "8", "--seed", "1"]) == 0
    return out


@pytest.fixture
def tree(phantom_tree, tmp_path):
    """A private copy of the phantom tree that a test may break."""
    return shutil.copytree(phantom_tree, tmp_path / "data")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_works_for_every_command(command, capsys):
    assert run([*command.split(), "--help"]) == 0
    assert "usage: python -m retina_data" in capsys.readouterr().out


def test_module_runs_as_a_script():
    result = subprocess.run(
        [sys.executable, "-m", "retina_data", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "export-npz" in result.stdout


def test_phantom_writes_a_valid_tree_with_folds_over_its_subjects(phantom_tree, capsys):
    assert len(list_eyes(phantom_tree)) == 6
    folds = read_folds(phantom_tree / "cross-validation-folds.yml", phantom_tree)
    assert len(folds) == 3
    assert run(["validate", str(phantom_tree)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_validate_names_every_fault_of_a_broken_tree_and_exits_2(tree, capsys):
    files = {(s, lat): eye_files(tree, s, lat) for s in ("sub001", "sub002", "sub003") for lat in ("OD", "OS")}
    rewrite_array(files["sub001", "OD"].oct, lambda a: np.where(a > 0.5, np.nan, a).astype(np.float32))
    rewrite_array(files["sub001", "OS"].labels, lambda a: np.where(a == 3, 20, a).astype(np.uint8))
    truncate(files["sub002", "OD"].oct)
    files["sub002", "OS"].oct.unlink()
    rewrite_array(files["sub003", "OD"].labels, lambda a: np.ascontiguousarray(a[:, :10]))
    set_header_zoom(files["sub003", "OS"].oct, 0, 0.0)
    assert run(["validate", str(tree)]) == 2
    report = capsys.readouterr().out.splitlines()
    expected = {
        files["sub001", "OD"].oct: "NaN",
        files["sub001", "OS"].labels: "label value(s) 20 outside 0..12",
        files["sub002", "OD"].oct: "truncated or corrupt",
        files["sub002", "OS"].oct: "missing OCT volume",
        files["sub003", "OD"].labels: "does not match OCT shape",
        files["sub003", "OS"].oct: "expected positive",
    }
    for path, message in expected.items():
        assert any(line.startswith(f"{path}: ") and message in line for line in report), (path, message, report)
    assert len(report) == len(expected), report


def test_folds_and_export_make_containers_for_one_fold(phantom_tree, tmp_path, capsys):
    folds = tmp_path / "folds.yml"
    assert run(["folds", str(phantom_tree), "--k", "3", "--seed", "2", "--output", str(folds)]) == 0
    assert (
        run(
            [
                "export-npz",
                str(phantom_tree),
                "--folds",
                str(folds),
                "--fold",
                "0",
                "--subsample",
                "2",
                "--output",
                str(tmp_path / "npz"),
            ]
        )
        == 0
    )
    test_subjects = read_folds(folds)[0]["TEST"]
    eyes = read_container(tmp_path / "npz" / "dataset_flat_subsmpl2_test_fold0.npz")
    assert sorted({e.subject for e in eyes}) == sorted(test_subjects)
    assert all(e.shape == (32, 16, 4) and e.slo.shape == (16, 8) for e in eyes)
    assert run(["validate", str(tmp_path / "npz" / "dataset_flat_subsmpl2_train_fold0.npz")]) == 0


def test_info_summarises_a_tree(phantom_tree, capsys):
    assert run(["info", str(phantom_tree)]) == 0
    out = capsys.readouterr().out
    assert "3 subject(s), 6 eye(s)" in out and "sub002_OS: shape (H, W, D) (32, 16, 8)" in out and "SLO 16x8" in out


def test_import_spectralis_adds_a_valid_eye(tmp_path, capsys):
    pytest.importorskip("eyepy")
    vol = write_vol(
        tmp_path / "a.vol",
        np.full((3, 24, 10), 0.5),
        np.zeros((30, 30), np.uint8),
        scale_x=0.01,
        distance=0.1,
        scale_z=0.004,
        slo_scale=(0.01, 0.02),
        laterality="OD",
    )
    assert run(["import", "spectralis", str(vol), str(tmp_path / "data"), "--subject", "p1"]) == 0
    assert "note: no layer annotations" in capsys.readouterr().out
    assert read_eye(tmp_path / "data", "p1", "OD").shape == (24, 10, 3)
    assert run(["validate", str(tmp_path / "data")]) == 0


def test_import_spectralis_xml_export_folder_adds_a_valid_eye(tmp_path):
    pytest.importorskip("eyepy")
    export = tmp_path / "export"
    write_xml_export(
        export,
        np.full((3, 24, 10), 120, np.uint8),
        np.zeros((30, 30), np.uint8),
        scale_x=0.01,
        scale_y=0.004,
        distance=0.1,
        slo_scale=(0.01, 0.02),
        laterality="OS",
    )
    assert run(["import", "spectralis", str(export), str(tmp_path / "data"), "--subject", "p1"]) == 0
    eye = read_eye(tmp_path / "data", "p1", "OS")
    assert eye.shape == (24, 10, 3) and eye.spacing == pytest.approx((0.004, 0.01, 0.1))
    assert run(["validate", str(tmp_path / "data")]) == 0


def test_import_dicom_adds_a_valid_eye_with_the_slo_found_beside_it(tmp_path, capsys):
    pytest.importorskip("pydicom")
    from dicom_files import write_opt, write_slo
    from pydicom.uid import generate_uid

    uid = generate_uid()
    write_slo(tmp_path / "slo.dcm", uid)
    lines = np.array([[[10.5 + 4 * d, 6.5], [10.5 + 4 * d, 24.5]] for d in range(4)])
    bscans = np.tile(np.linspace(0, 4095, 32)[None, :, None], (4, 1, 10)).astype(np.uint16)
    path = write_opt(tmp_path / "oct.dcm", bscans, lines, uid)
    assert run(["import", "dicom", str(path), str(tmp_path / "data"), "--subject", "p1", "--flatten", "none"]) == 0
    eye = read_eye(tmp_path / "data", "p1", "OS")
    assert eye.shape == (32, 10, 4) and eye.slo is not None
    assert eye.bscan_positions == pytest.approx([0.0, 0.08, 0.16, 0.24])
    assert "note: not flattened" in capsys.readouterr().out
    assert run(["validate", str(tmp_path / "data")]) == 0


def test_import_duke_amd_flattens_at_the_bm_of_its_labels(tmp_path, capsys):
    pytest.importorskip("eyepy")
    import scipy.io

    height, width, depth = 40, 6, 3
    maps = np.stack(
        [np.full((depth, width), 5.0), np.full((depth, width), 20.0), np.tile(24.0 + np.arange(width) % 2, (depth, 1))],
        axis=-1,
    )
    scipy.io.savemat(
        tmp_path / "amd.mat",
        {"images": np.full((height, width, depth), 100.0), "layerMaps": maps, "Age": np.array([[70]])},
    )
    assert (
        run(
            [
                "import",
                "duke-amd",
                str(tmp_path / "amd.mat"),
                str(tmp_path / "data"),
                "--subject",
                "amd1",
                "--laterality",
                "OD",
            ]
        )
        == 0
    )
    assert "note: flattened at Bruch's membrane below the RPE label" in capsys.readouterr().out
    eye = read_eye(tmp_path / "data", "amd1", "OD")
    bm_rows = (eye.labels == 12).argmax(axis=0)
    assert np.unique(bm_rows).size == 1  # the BM's one-row dip is flattened
    assert run(["validate", str(tmp_path / "data")]) == 0


def test_import_retouch_adds_an_unlabelled_eye(tmp_path):
    import SimpleITK as sitk

    case = tmp_path / "TRAIN001"
    case.mkdir()
    image = sitk.GetImageFromArray(np.full((3, 24, 10), 30000, np.uint16))
    image.SetSpacing((0.0115, 0.0039, 0.24))
    sitk.WriteImage(image, str(case / "oct.mhd"))
    assert (
        run(
            [
                "import",
                "retouch",
                str(case),
                str(tmp_path / "data"),
                "--subject",
                "t1",
                "--laterality",
                "OS",
                "--flatten",
                "none",
            ]
        )
        == 0
    )
    eye = read_eye(tmp_path / "data", "t1", "OS")
    assert eye.shape == (24, 10, 3) and eye.labels is None and eye.spacing == pytest.approx((0.0039, 0.0115, 0.24))


def test_import_dicom_of_another_file_is_one_line_and_exit_2(tmp_path, capsys):
    pytest.importorskip("pydicom")
    (tmp_path / "x.dcm").write_text("no")
    assert run(["import", "dicom", str(tmp_path / "x.dcm"), str(tmp_path / "data"), "--subject", "p1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "x.dcm: cannot read DICOM" in err and "\n" not in err


def _stack_args(tmp_path):
    folder = tmp_path / "png"
    if not folder.exists():
        folder.mkdir()
        for d in range(3):
            Image.fromarray(np.full((12, 8), 40 * d, dtype=np.uint8)).save(folder / f"b{d}.png")
    return [
        "import",
        "stack",
        str(folder),
        str(tmp_path / "stackdata"),
        "--spacing",
        "0.004",
        "0.01",
        "0.1",
        "--subject",
        "s1",
        "--laterality",
        "OS",
    ]


@pytest.mark.parametrize(
    "command",
    ["phantom", "folds", "export-npz", "subsample", pytest.param("figure", marks=pytest.mark.slow), "import stack"],
)
def test_commands_refuse_to_overwrite_without_the_flag(command, tree, tmp_path, capsys):
    args = {
        "phantom": ["phantom", str(tmp_path / "p"), "--subjects", "2", "--shape", "32", "8", "4"],
        "folds": ["folds", str(tree), "--k", "2", "--output", str(tmp_path / "f.yml")],
        "export-npz": [
            "export-npz",
            str(tree),
            "--folds",
            str(tree / "cross-validation-folds.yml"),
            "--fold",
            "1",
            "--subsample",
            "4",
            "--output",
            str(tmp_path / "npz"),
        ],
        "subsample": ["subsample", str(tree), "--factor", "2", "--factor", "4"],
        "figure": ["figure", str(tree), "--output", str(tmp_path / "fig.png")],
        "import stack": _stack_args(tmp_path),
    }[command]
    assert run(args) == 0
    capsys.readouterr()
    assert run(args) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "--overwrite" in error and "\n" not in error
    assert run([*args, "--overwrite"]) == 0


def test_bad_input_exits_2_with_a_one_line_reason(tree, tmp_path, capsys):
    assert (
        run(
            [
                "export-npz",
                str(tree),
                "--folds",
                str(tmp_path / "none.yml"),
                "--fold",
                "0",
                "--subsample",
                "2",
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "none.yml" in error and "\n" not in error


@pytest.mark.parametrize("subject", ["../escaped", "/tmp/absolute-subject", ""])
def test_import_refuses_a_subject_id_that_would_write_outside_the_data_folder(subject, tmp_path, capsys):
    args = _stack_args(tmp_path)
    args[args.index("s1")] = subject
    assert run(args) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: subject id = ") and "\n" not in error
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "stackdata").exists()


def test_an_output_path_below_a_file_gives_one_line_naming_the_path(tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    assert run(["phantom", str(tmp_path / "a_file" / "data"), "--subjects", "2", "--shape", "32", "8", "4"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and "a_file" in error and "a file is in the way of a folder" in error


def test_a_non_finite_phantom_option_is_refused_before_anything_is_written(tmp_path, capsys):
    assert run(["phantom", str(tmp_path / "p"), "--subjects", "2", "--pathology-fraction", "nan"]) == 2
    assert "pathology_fraction = nan: expected a finite number" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_an_unlabelled_import_is_flattened_at_the_bm_found_in_the_image_and_says_so(tmp_path, capsys):
    assert run(_stack_args(tmp_path)) == 0
    assert "note: flattened at Bruch's membrane found in the image" in capsys.readouterr().out
    assert read_eye(tmp_path / "stackdata", "s1", "OS").meta["flattening"] == "detected"
    assert run([*_stack_args(tmp_path), "--flatten", "none", "--overwrite"]) == 0
    assert read_eye(tmp_path / "stackdata", "s1", "OS").meta["flattening"] == "none"

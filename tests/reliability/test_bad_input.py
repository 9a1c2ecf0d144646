"""Bad input, fed to every entry point: one line ``error: ...`` naming the culprit, exit 2, nothing written.

The matrix is :data:`MATRIX`: one row per (entry point, fault) with the words the error
line must contain. A fault is a function in :data:`FAULTS` that breaks a fresh copy of the
tiny phantom, its folds file, the entry's config or its output folder; adding a case is
one row (and, for a new kind of fault, one function).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from entry_points import SCRIPTS, atlas_config, interpolation_config, run_entry, snapshot

from retina_data.config import dump_yaml, read_yaml
from retina_data.containers import container_name
from retina_data.export import export_containers
from retina_data.folds import FOLDS_FILE
from retina_data.nifti import read_nifti, write_nifti
from retina_data.tree import eye_files

TREES = {
    "geninr": "interpolation",
    "singleinr": "interpolation",
    "predict": "predict",
    "densify": "predict",
    "atlas": "atlas",
    "atlas_inference": "atlas",
    "atlas_resolution": "atlas",
    "pretrain_atlas": "atlas",
    "export-npz": "data",
    "subsample": "data",
    "folds": "data",
    "phantom": "data",
}
BROKEN_EYE = ("sub001", "OD")
"""A training eye of fold 0 (TRAIN: sub001, sub002; TEST: sub003)."""
FACTOR = 4
"""B-scan factor of the interpolation configs (and of the exported containers)."""
PROGRESS_BAR = re.compile(r"[^\r\n]*?\d+%\|[^|\r\n]*\| *\d+/\d+ \[[^\]\r\n]*\]")
"""One frame of a tqdm bar: the data commands read eyes behind a progress bar, which is not an error line."""


@dataclass
class Case:
    """One entry point's inputs in a private folder, before and after a fault is applied."""

    entry: str
    tmp: Path
    data_dir: Path
    output: Path
    checkpoint: Path | None = None
    config: dict[str, Any] | None = None
    config_text: str | None = None
    gpu: str = "-1"
    gpu_option: str = "--gpu"
    extra: list[str] = field(default_factory=list)
    config_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config_path = self.tmp / "config.yaml"

    @property
    def tree(self) -> str:
        return TREES[self.entry]

    @property
    def folds_file(self) -> Path:
        return self.data_dir / FOLDS_FILE

    def set_data_dir(self, path: Path) -> None:
        """Point the entry at another data folder (config key or argument)."""
        if self.tree == "interpolation":
            self.config["SETTINGS"]["IMG_DIR"] = str(path)
        elif self.tree == "atlas":
            self.config["SETTINGS"]["DATA_DIR"] = str(path)
        self.data_dir = path

    def write_config(self) -> None:
        if self.config_text is not None:
            self.config_path.write_text(self.config_text, encoding="utf-8")
        elif self.config is not None:
            self.config_path.write_text(dump_yaml(self.config), encoding="utf-8")

    def argv(self) -> list[str]:
        if self.tree == "interpolation":
            return [
                SCRIPTS[self.entry],
                str(self.config_path),
                "--gpu",
                self.gpu,
                "--quiet",
                "--output",
                str(self.output),
            ]
        if self.entry == "densify":
            return [
                SCRIPTS["densify"],
                str(self.checkpoint),
                str(self.data_dir),
                "--subsample",
                str(FACTOR),
                "--gpu",
                self.gpu,
                "--quiet",
                "--output",
                str(self.output),
            ]
        if self.tree == "predict":
            return [
                SCRIPTS["predict"],
                str(self.checkpoint),
                str(self.data_dir),
                "sub001_OD",
                "--subsample",
                str(FACTOR),
                "--gpu",
                self.gpu,
                "--quiet",
                "--output",
                str(self.output),
            ]
        if self.tree == "atlas":
            argv = [SCRIPTS[self.entry], str(self.config_path), self.gpu_option, self.gpu, "--output", str(self.output)]
            return argv + (["--checkpoint", str(self.checkpoint)] if self.checkpoint else [])
        data = str(self.data_dir)
        return {
            "export-npz": [
                "-m",
                "retina_data",
                "export-npz",
                data,
                "--folds",
                str(self.folds_file),
                "--fold",
                "0",
                "--subsample",
                str(FACTOR),
                "--output",
                str(self.output),
            ],
            "subsample": ["-m", "retina_data", "subsample", data, "--factor", str(FACTOR)],
            "folds": ["-m", "retina_data", "folds", data, "--k", "2", "--output", str(self.output / FOLDS_FILE)],
            "phantom": [
                "-m",
                "retina_data",
                "phantom",
                str(self.output),
                "--subjects",
                "2",
                "--shape",
                "32",
                "8",
                "4",
                *self.extra,
            ],
        }[self.entry]


# --- faults -------------------------------------------------------------------------------


def _rewrite(path: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    """Write ``change(array)`` back to a NIfTI of the tree (its positions trimmed to the new last axis)."""
    image = read_nifti(path)
    array = change(image.array.copy())
    write_nifti(path, array, image.spacing, image.positions[: array.shape[-1]], image.meta, overwrite=True)


def _eye(case: Case):
    return eye_files(case.data_dir, *BROKEN_EYE)


def _set_nan(oct_: np.ndarray) -> np.ndarray:
    oct_[3, 4, 5] = np.nan
    return oct_


def _set_label_20(labels: np.ndarray) -> np.ndarray:
    labels[3, 4, 5] = 20
    return labels


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def missing_config(case: Case) -> None:
    case.config = None
    case.config_path = case.tmp / "missing.yaml"


def yaml_syntax(case: Case) -> None:
    if case.tree == "data":
        case.folds_file.write_text("FOLD:\n  0: {TRAIN: [sub001, sub002], TEST: [sub003\n", encoding="utf-8")
        return
    case.config_text = dump_yaml(case.config) + "EXTRA: [1, 2\n"


def empty_config(case: Case) -> None:
    case.config_text = ""


def empty_data_dir_key(case: Case) -> None:
    case.config["SETTINGS"]["IMG_DIR"] = ""


def unknown_key(case: Case) -> None:
    case.config["TRAINING"]["TOTAL_EPOCH"] = case.config["TRAINING"].pop("TOTAL_EPOCHS")


def negative_epochs(case: Case) -> None:
    case.config["TRAINING"]["TOTAL_EPOCHS"] = -1


def unknown_activation(case: Case) -> None:
    case.config["MODEL"]["ACTIVATION"] = "GELU"


def hashgrid_without_block(case: Case) -> None:
    case.config["POS_ENCODING"] = {"TYPE": "Hashgrid"}


def no_latent_code(case: Case) -> None:
    case.config["TRAINING"]["LATENT_CODE"]["SIZE"] = 0


def too_few_classes(case: Case) -> None:
    """Fewer classes than the phantom's labels (0..12) need."""
    case.config["MODEL"]["NUM_CLASSES"] = 5


def unknown_sample_mode(case: Case) -> None:
    case.config["DATA"]["SAMPLE_MODE"] = "random"


def two_dimensional_patch(case: Case) -> None:
    case.config["DATA"]["PATCH_SIZE"] = [8, 8]


def missing_data_dir(case: Case) -> None:
    case.set_data_dir(case.tmp / "nowhere")


def missing_folds_file(case: Case) -> None:
    case.folds_file.unlink()


def _containers(case: Case) -> Path:
    """Reference containers of fold 0 (training at every FACTOR-th B-scan, dense test eyes) as the data."""
    folder = case.tmp / "containers"
    for factor in (FACTOR, 1):
        export_containers(case.data_dir, case.folds_file, 0, factor, folder, progress=False)
    case.set_data_dir(folder)
    return folder / container_name(FACTOR, "train", 0)


def missing_container(case: Case) -> None:
    _containers(case).unlink()


def truncated_npz(case: Case) -> None:
    _truncate(_containers(case))


def _store_of(case: Case) -> Path:
    """The case's tree written as an eye store (with its folds file), which the entry then reads."""
    from retina_data.eye_store import write_store
    from retina_data.tree import list_eyes, read_eye

    store = case.tmp / "eyes.zarr"
    write_store(store, (read_eye(case.data_dir, *eye) for eye in list_eyes(case.data_dir)), progress=False)
    shutil.copyfile(case.folds_file, store / FOLDS_FILE)
    case.set_data_dir(store)
    return store


def store_missing_chunk(case: Case) -> None:
    """B-scan 3 of the training eye sub001_OD gone from the store."""
    (_store_of(case) / "sub001_OD" / "oct" / "c" / "3" / "0" / "0").unlink()


def store_corrupt_chunk(case: Case) -> None:
    """B-scan 3 of sub001_OD's labels with a flipped byte (its zstd checksum fails)."""
    chunk = _store_of(case) / "sub001_OD" / "labels" / "c" / "3" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))


def store_of_a_newer_format(case: Case) -> None:
    root = _store_of(case) / "zarr.json"
    text = root.read_text(encoding="utf-8")
    root.write_text(text.replace('"format_version": 1', '"format_version": 99'), encoding="utf-8")


def subject_not_on_disk(case: Case) -> None:
    folds = read_yaml(case.folds_file)
    folds["FOLD"][0]["TRAIN"].append("sub009")
    case.folds_file.write_text(dump_yaml(folds), encoding="utf-8")


def label_shape_mismatch(case: Case) -> None:
    _rewrite(_eye(case).labels, lambda labels: labels[:, :, :8])


def slo_shape_mismatch(case: Case) -> None:
    _rewrite(_eye(case).slo, lambda slo: slo[:20])


def nan_intensities(case: Case) -> None:
    _rewrite(_eye(case).oct, _set_nan)


def labels_out_of_range(case: Case) -> None:
    _rewrite(_eye(case).labels, _set_label_20)


def zero_spacing(case: Case) -> None:
    """The OCT header's first voxel size (``pixdim[1]``, bytes 80-83 of a NIfTI-1 header) set to 0."""
    path = _eye(case).oct
    header = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<f", header, 80, 0.0)
    path.write_bytes(gzip.compress(bytes(header)))


def truncated_nifti(case: Case) -> None:
    _truncate(_eye(case).oct)


def empty_data_set(case: Case) -> None:
    for subject in sorted(p for p in case.data_dir.iterdir() if p.is_dir()):
        shutil.rmtree(subject)


def missing_checkpoint(case: Case) -> None:
    case.checkpoint = case.tmp / "missing.ckpt"


def oct_stored_0_255(case: Case) -> None:
    """A training eye's OCT stored as 0..255 (not the tree's flattened [0, 1])."""
    _rewrite(_eye(case).oct, lambda oct_: (oct_ * 255).astype(np.float32))


def oct_float64(case: Case) -> None:
    _rewrite(_eye(case).oct, lambda oct_: oct_.astype(np.float64))


def nan_bscan_position(case: Case) -> None:
    path = _eye(case).oct
    image = read_nifti(path)
    positions = image.positions.copy()
    positions[2] = np.nan
    write_nifti(path, image.array, image.spacing, positions, image.meta, overwrite=True)


def _set_fold_part(case: Case, part: str, subjects: list[str]) -> None:
    folds = read_yaml(case.folds_file)
    folds["FOLD"][0][part] = subjects
    case.folds_file.write_text(dump_yaml(folds), encoding="utf-8")


def empty_test_fold(case: Case) -> None:
    _set_fold_part(case, "TEST", [])


def empty_train_fold(case: Case) -> None:
    _set_fold_part(case, "TRAIN", [])


def training_shape_mismatch(case: Case) -> None:
    """One training eye with two depth rows fewer than the others (OCT and labels alike)."""
    _rewrite(_eye(case).oct, lambda oct_: np.ascontiguousarray(oct_[:-2]))
    _rewrite(_eye(case).labels, lambda labels: np.ascontiguousarray(labels[:-2]))


def _rewrite_container(path: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    change(arrays)
    np.savez_compressed(path, **arrays)


def train_eye_in_test_container(case: Case) -> None:
    """The test containers list a training subject's eye (leakage)."""
    _containers(case)
    case.config["EVALUATION"]["TRUTH_CONTAINER"] = "densest"
    for path in sorted(case.data_dir.glob("*_test_fold0.npz")):
        _rewrite_container(
            path, lambda arrays: arrays.update(subject_names=np.array(["sub001_OS", *arrays["subject_names"][1:]]))
        )


def subject_twice_in_container(case: Case) -> None:
    _rewrite_container(
        _containers(case),
        lambda arrays: arrays.update(
            subject_names=np.array([arrays["subject_names"][0]] * len(arrays["subject_names"]))
        ),
    )


def unsafe_subject_in_container(case: Case) -> None:
    """A container's subject name that, as a path, leaves the run folder."""
    _rewrite_container(
        _containers(case),
        lambda arrays: arrays.update(subject_names=np.array(["../x_OD", *arrays["subject_names"][1:]])),
    )


def npy_named_npz(case: Case) -> None:
    path = _containers(case)
    with np.load(path) as data:
        oct_vols = data["oct_vols"]
    with path.open("wb") as handle:
        np.save(handle, oct_vols)


def text_spacing_in_container(case: Case) -> None:
    _rewrite_container(_containers(case), lambda arrays: arrays.update(spacing_oct=np.array(["0.0039", "a", "b"])))


def network_too_large(case: Case) -> None:
    """Weights alone of terabytes: refused before any allocation."""
    case.config["DISP_MODEL" if case.tree == "atlas" else "MODEL"]["HIDDEN_SIZE"] = 2**20


def latent_codes_too_large(case: Case) -> None:
    """Codes of a billion entries: the first layer alone holds terabytes."""
    case.config["TRAINING"]["LATENT_CODE"]["SIZE"] = 10**9


def batch_too_large(case: Case) -> None:
    """Two billion points per step: their coordinates, indices and labels alone hold 67 GiB."""
    case.config["TRAINING"]["BATCH_POINTS"] = 2 * 10**9


def infinite_learning_rate(case: Case) -> None:
    """``.inf`` passed every lower bound (the run then diverged after writing its folder)."""
    case.config["TRAINING"]["LEARNING_RATE"] = float("inf")


def factor_above_the_bscans(case: Case) -> None:
    """A resolution factor of 64 for test eyes of 16 B-scans (noticed after the whole training before)."""
    case.config["EVALUATION"]["RESOLUTION_FACTORS"] = [1, 64]


def four_dimensional_oct(case: Case) -> None:
    """A training eye's OCT saved as a 4-D NIfTI (two volumes), its JSON sidecar beside it unchanged."""
    path = _eye(case).oct
    image = nib.load(path)
    volume = np.asarray(image.dataobj)
    nib.save(nib.Nifti1Image(np.stack([volume, volume], axis=-1), image.affine, image.header), path)


def subject_twice_in_fold(case: Case) -> None:
    _set_fold_part(case, "TRAIN", ["sub001", "sub002", "sub001"])


def subject_in_both_fold_parts(case: Case) -> None:
    _set_fold_part(case, "TEST", ["sub003", "sub001"])


def output_under_a_file(case: Case) -> None:
    """The output path runs through a file."""
    blocker = case.tmp / "blocker"
    blocker.write_text("a file\n", encoding="utf-8")
    case.output = blocker / "run"


def read_only_output(case: Case) -> None:
    """The output goes into a folder without write permission (root writes there anyway: skipped)."""
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    parent = case.tmp / "readonly"
    parent.mkdir(mode=0o555)
    case.output = parent / "run"


def nan_pathology_fraction(case: Case) -> None:
    case.extra = ["--pathology-fraction", "nan"]


def phantom_too_large(case: Case) -> None:
    case.extra = ["--shape", "100000", "100000", "100000"]


def phantom_one_fold(case: Case) -> None:
    case.extra = ["--folds", "1"]


def gpu_without_cuda(case: Case) -> None:
    case.gpu = "5"


def gpus_without_cuda(case: Case) -> None:
    case.gpu_option, case.gpu = "--gpus", "2"


def atlas_checkpoint_to_predict(case: Case, atlas_checkpoint: Path) -> None:
    case.checkpoint = atlas_checkpoint


def pretraining_checkpoint(case: Case) -> None:
    """An atlas pretraining checkpoint where the inference scripts expect a trained registration."""
    import lightning as L
    import torch

    from atlas_registration.config import AtlasConfig
    from atlas_registration.datasets.label_mapping import LabelMapping
    from atlas_registration.training import pretraining_module
    from retina_data.config import from_dict

    module = pretraining_module(from_dict(case.config, AtlasConfig), LabelMapping.default().num_classes)
    case.checkpoint = case.tmp / "pretrain_atlas.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        case.checkpoint,
    )


def random_file_to_predict(case: Case) -> None:
    case.checkpoint = case.tmp / "random.pt"
    case.checkpoint.write_bytes(np.random.default_rng(0).bytes(4096))


def model_of_another_architecture(case: Case) -> None:
    """A model.pt whose weights are of HIDDEN_SIZE 16 while its config says 24 (saved by an older version)."""
    import torch

    record = torch.load(case.checkpoint, map_location="cpu", weights_only=False)
    record["config"]["MODEL"]["HIDDEN_SIZE"] = 24
    case.checkpoint = case.tmp / "model.pt"
    torch.save(record, case.checkpoint)


def output_exists(case: Case) -> None:
    """Earlier results: a file in the run folder, or the very file a data command writes."""
    earlier = {"export-npz": container_name(FACTOR, "train", 0), "folds": FOLDS_FILE}.get(case.entry, "results.csv")
    case.output.mkdir(parents=True)
    (case.output / earlier).write_text("earlier results\n", encoding="utf-8")


FAULTS: dict[str, Callable[[Case], None]] = {
    f.__name__: f
    for f in (
        missing_config,
        yaml_syntax,
        empty_config,
        empty_data_dir_key,
        unknown_key,
        negative_epochs,
        unknown_activation,
        hashgrid_without_block,
        no_latent_code,
        too_few_classes,
        unknown_sample_mode,
        two_dimensional_patch,
        missing_data_dir,
        missing_folds_file,
        missing_container,
        truncated_npz,
        subject_not_on_disk,
        label_shape_mismatch,
        slo_shape_mismatch,
        nan_intensities,
        labels_out_of_range,
        zero_spacing,
        truncated_nifti,
        empty_data_set,
        missing_checkpoint,
        output_exists,
        oct_stored_0_255,
        oct_float64,
        nan_bscan_position,
        empty_test_fold,
        empty_train_fold,
        training_shape_mismatch,
        train_eye_in_test_container,
        subject_twice_in_container,
        npy_named_npz,
        text_spacing_in_container,
        network_too_large,
        gpu_without_cuda,
        random_file_to_predict,
        model_of_another_architecture,
        gpus_without_cuda,
        pretraining_checkpoint,
        store_missing_chunk,
        store_corrupt_chunk,
        store_of_a_newer_format,
        latent_codes_too_large,
        four_dimensional_oct,
        subject_twice_in_fold,
        subject_in_both_fold_parts,
        output_under_a_file,
        read_only_output,
        nan_pathology_fraction,
        phantom_too_large,
        phantom_one_fold,
        unsafe_subject_in_container,
        batch_too_large,
        factor_above_the_bscans,
        infinite_learning_rate,
    )
}
"""The faults ``atlas_checkpoint`` (an atlas checkpoint given to ``predict``) and
``interpolation_model`` (a gen-INR ``model.pt`` given to the atlas inference) need the other
tree's fixture: applied by the test itself."""

MATRIX = [
    # entry point        fault                     words the one-line error must contain
    ("geninr", "missing_config", ["missing.yaml", "not found"]),
    ("geninr", "yaml_syntax", ["config.yaml", "YAML syntax error", "line"]),
    ("geninr", "empty_config", ["config.yaml", "the config file is empty", "SETTINGS"]),
    ("geninr", "empty_data_dir_key", ["SETTINGS.IMG_DIR is empty"]),
    ("atlas", "empty_config", ["config.yaml", "the config file is empty", "DATA"]),
    ("geninr", "unknown_key", ["TRAINING.TOTAL_EPOCH", "did you mean TRAINING.TOTAL_EPOCHS"]),
    ("geninr", "negative_epochs", ["TRAINING.TOTAL_EPOCHS", "-1", ">= 1"]),
    ("geninr", "unknown_activation", ["MODEL.ACTIVATION", "GELU"]),
    ("geninr", "hashgrid_without_block", ["POS_ENCODING.HASHGRID"]),
    ("geninr", "no_latent_code", ["config.yaml", "TRAINING.LATENT_CODE.SIZE = 0"]),
    ("geninr", "too_few_classes", ["MODEL.NUM_CLASSES = 5", "12"]),
    ("geninr", "missing_data_dir", ["IMG_DIR", "nowhere"]),
    ("geninr", "missing_folds_file", [FOLDS_FILE, "folds file not found"]),
    ("geninr", "missing_container", [container_name(FACTOR, "train", 0), "not found"]),
    ("geninr", "truncated_npz", [container_name(FACTOR, "train", 0), "truncated"]),
    ("geninr", "subject_not_on_disk", [FOLDS_FILE, "sub009"]),
    ("geninr", "label_shape_mismatch", ["sub001", "shape"]),
    ("geninr", "slo_shape_mismatch", ["sub001", "SLO"]),
    ("geninr", "nan_intensities", ["oct_flat_od.nii.gz", "NaN"]),
    ("geninr", "labels_out_of_range", ["oct_seg_flat_od.nii.gz", "20"]),
    ("geninr", "zero_spacing", ["sub001", "oct_flat", "spacing"]),
    ("geninr", "truncated_nifti", ["oct_flat_od.nii.gz", "truncated"]),
    ("geninr", "empty_data_set", ["data", "no eyes"]),
    ("geninr", "output_exists", ["output", "--overwrite", "--resume"]),
    ("geninr", "oct_stored_0_255", ["oct_flat_od.nii.gz", "255", "[0, 1]", "MINMAX_NORMALISE"]),
    ("geninr", "oct_float64", ["oct_flat_od.nii.gz", "float64", "expected float32"]),
    ("geninr", "nan_bscan_position", ["oct_flat_od.json", "positions_mm", "finite"]),
    ("geninr", "empty_test_fold", [FOLDS_FILE, "FOLD.0.TEST is empty"]),
    ("geninr", "empty_train_fold", [FOLDS_FILE, "FOLD.0.TRAIN is empty"]),
    ("geninr", "training_shape_mismatch", ["training eyes", "shape", "(30, 24, 4)"]),
    ("geninr", "train_eye_in_test_container", ["test_fold0.npz", "sub001", "training container"]),
    ("geninr", "subject_twice_in_container", [container_name(FACTOR, "train", 0), "twice"]),
    ("geninr", "npy_named_npz", [container_name(FACTOR, "train", 0), ".npy file named .npz"]),
    ("geninr", "text_spacing_in_container", [container_name(FACTOR, "train", 0), "spacing_oct", "numbers"]),
    ("geninr", "network_too_large", ["MODEL.HIDDEN_SIZE = 1048576", "GiB"]),
    ("geninr", "gpu_without_cuda", ["--gpu 5", "no CUDA", "--gpu -1"]),
    ("geninr", "store_missing_chunk", ["eyes.zarr", "eye sub001_OD", "B-scan(s) 3 missing"]),
    ("geninr", "store_corrupt_chunk", ["eyes.zarr", "eye sub001_OD", "labels chunk of B-scan 3"]),
    ("geninr", "store_of_a_newer_format", ["eyes.zarr", "format_version = 99"]),
    ("singleinr", "missing_config", ["missing.yaml", "not found"]),
    ("singleinr", "oct_stored_0_255", ["oct_flat_od.nii.gz", "[0, 1]", "MINMAX_NORMALISE"]),
    ("singleinr", "empty_test_fold", [FOLDS_FILE, "FOLD.0.TEST is empty"]),
    ("singleinr", "gpu_without_cuda", ["--gpu 5", "no CUDA"]),
    ("singleinr", "unknown_key", ["TRAINING.TOTAL_EPOCH", "did you mean TRAINING.TOTAL_EPOCHS"]),
    ("singleinr", "unknown_activation", ["MODEL.ACTIVATION", "GELU"]),
    ("singleinr", "missing_data_dir", ["IMG_DIR", "nowhere"]),
    ("singleinr", "nan_intensities", ["oct_flat_od.nii.gz", "NaN"]),
    ("singleinr", "labels_out_of_range", ["oct_seg_flat_od.nii.gz", "20"]),
    ("singleinr", "output_exists", ["output", "--overwrite", "--resume"]),
    ("predict", "oct_stored_0_255", ["oct_flat_od.nii.gz", "[0, 1]"]),
    ("predict", "nan_intensities", ["oct_flat_od.nii.gz", "NaN"]),
    ("predict", "atlas_checkpoint", ["last.ckpt", "not a gen-INR model", "atlas"]),
    ("predict", "random_file_to_predict", ["random.pt", "cannot read checkpoint"]),
    ("predict", "model_of_another_architecture", ["model.pt", "does not match the network of the config"]),
    ("predict", "gpu_without_cuda", ["--gpu 5", "no CUDA"]),
    ("predict", "output_exists", ["output", "--overwrite"]),
    ("densify", "atlas_checkpoint", ["last.ckpt", "not a gen-INR model", "atlas"]),
    ("densify", "random_file_to_predict", ["random.pt", "cannot read checkpoint"]),
    ("densify", "gpu_without_cuda", ["--gpu 5", "no CUDA"]),
    ("densify", "output_exists", ["output", "--overwrite", "--resume"]),
    ("densify", "missing_data_dir", ["nowhere", "not found"]),
    ("densify", "empty_data_set", ["data", "no eyes"]),
    ("atlas", "missing_config", ["missing.yaml", "not found"]),
    ("atlas", "yaml_syntax", ["config.yaml", "YAML syntax error", "line"]),
    ("atlas", "unknown_key", ["TRAINING.TOTAL_EPOCH", "did you mean TRAINING.TOTAL_EPOCHS"]),
    ("atlas", "negative_epochs", ["TRAINING.TOTAL_EPOCHS", "-1", ">= 1"]),
    ("atlas", "unknown_sample_mode", ["DATA.SAMPLE_MODE", "random"]),
    ("atlas", "two_dimensional_patch", ["DATA.PATCH_SIZE"]),
    ("atlas", "missing_data_dir", ["nowhere", "DATA_DIR"]),
    ("atlas", "missing_folds_file", [FOLDS_FILE, "folds file not found"]),
    ("atlas", "subject_not_on_disk", [FOLDS_FILE, "sub009"]),
    ("atlas", "label_shape_mismatch", ["sub001", "shape"]),
    ("atlas", "slo_shape_mismatch", ["sub001", "SLO"]),
    ("atlas", "nan_intensities", ["oct_flat_od.nii.gz", "NaN"]),
    ("atlas", "labels_out_of_range", ["oct_seg_flat_od.nii.gz", "20"]),
    ("atlas", "zero_spacing", ["sub001", "oct_flat", "spacing"]),
    ("atlas", "truncated_nifti", ["oct_flat_od.nii.gz", "truncated"]),
    ("atlas", "empty_data_set", ["data", "no eyes"]),
    ("atlas", "output_exists", ["output", "--overwrite", "--resume"]),
    ("atlas", "gpu_without_cuda", ["--gpu 5", "no CUDA", "--gpu -1"]),
    ("atlas", "gpus_without_cuda", ["--gpus 2", "no CUDA", "--gpu -1"]),
    ("atlas", "oct_float64", ["oct_flat_od.nii.gz", "float64", "expected float32"]),
    (
        "atlas_inference",
        "interpolation_model",
        ["model.pt", "not a GINR registration checkpoint", "interpolation tree"],
    ),
    ("atlas_inference", "random_file_to_predict", ["random.pt", "cannot read checkpoint"]),
    ("atlas_inference", "pretraining_checkpoint", ["pretrain_atlas.ckpt", "lack num_eyes", "pretraining"]),
    ("atlas_resolution", "gpu_without_cuda", ["--gpu 5", "no CUDA"]),
    ("atlas_resolution", "interpolation_model", ["model.pt", "not a GINR registration checkpoint"]),
    ("atlas_inference", "missing_config", ["missing.yaml", "not found"]),
    ("atlas_inference", "unknown_key", ["TRAINING.TOTAL_EPOCH", "did you mean TRAINING.TOTAL_EPOCHS"]),
    ("atlas_inference", "missing_data_dir", ["nowhere", "DATA_DIR"]),
    ("atlas_inference", "nan_intensities", ["oct_flat_od.nii.gz", "NaN"]),
    ("atlas_inference", "missing_checkpoint", ["missing.ckpt", "not found"]),
    ("atlas_inference", "output_exists", ["output", "--overwrite", "--resume"]),
    ("atlas_resolution", "missing_config", ["missing.yaml", "not found"]),
    ("atlas_resolution", "negative_epochs", ["TRAINING.TOTAL_EPOCHS", "-1", ">= 1"]),
    ("atlas_resolution", "truncated_nifti", ["oct_flat_od.nii.gz", "truncated"]),
    ("atlas_resolution", "missing_checkpoint", ["missing.ckpt", "not found"]),
    ("atlas_resolution", "output_exists", ["output", "--overwrite", "--resume"]),
    ("pretrain_atlas", "missing_config", ["missing.yaml", "not found"]),
    ("pretrain_atlas", "labels_out_of_range", ["oct_seg_flat_od.nii.gz", "20"]),
    ("pretrain_atlas", "output_exists", ["output", "--overwrite", "--resume"]),
    ("export-npz", "yaml_syntax", [FOLDS_FILE, "YAML syntax error"]),
    ("export-npz", "missing_folds_file", [FOLDS_FILE, "folds file not found"]),
    ("export-npz", "missing_data_dir", ["nowhere"]),
    ("export-npz", "subject_not_on_disk", [FOLDS_FILE, "sub009"]),
    ("export-npz", "label_shape_mismatch", ["sub001", "shape"]),
    ("export-npz", "nan_intensities", ["oct_flat_od.nii.gz", "NaN"]),
    ("export-npz", "labels_out_of_range", ["oct_seg_flat_od.nii.gz", "20"]),
    ("export-npz", "zero_spacing", ["sub001", "spacing"]),
    ("export-npz", "truncated_nifti", ["oct_flat_od.nii.gz", "truncated"]),
    ("export-npz", "empty_data_set", ["data", "no eyes"]),
    ("export-npz", "output_exists", [container_name(FACTOR, "train", 0), "--overwrite"]),
    ("subsample", "missing_data_dir", ["nowhere"]),
    ("subsample", "nan_intensities", ["oct_flat_od.nii.gz", "NaN"]),
    ("subsample", "zero_spacing", ["sub001", "spacing"]),
    ("subsample", "truncated_nifti", ["oct_flat_od.nii.gz", "truncated"]),
    ("subsample", "empty_data_set", ["data", "no eyes"]),
    ("folds", "missing_data_dir", ["nowhere"]),
    ("folds", "empty_data_set", ["data", "empty data set"]),
    ("folds", "output_exists", [FOLDS_FILE, "--overwrite"]),
    ("geninr", "four_dimensional_oct", ["oct_flat_od.nii.gz", "3-D", "(32, 24, 16, 2)"]),
    ("singleinr", "four_dimensional_oct", ["oct_flat_od.nii.gz", "3-D", "(32, 24, 16, 2)"]),
    ("predict", "four_dimensional_oct", ["oct_flat_od.nii.gz", "3-D", "(32, 24, 16, 2)"]),
    ("atlas", "four_dimensional_oct", ["oct_flat_od.nii.gz", "3-D", "(32, 24, 16, 2)"]),
    ("atlas_inference", "four_dimensional_oct", ["oct_flat_od.nii.gz", "3-D", "(32, 24, 16, 2)"]),
    ("pretrain_atlas", "four_dimensional_oct", ["oct_flat_od.nii.gz", "3-D", "(32, 24, 16, 2)"]),
    ("export-npz", "four_dimensional_oct", ["oct_flat_od.nii.gz", "3-D", "(32, 24, 16, 2)"]),
    ("subsample", "four_dimensional_oct", ["oct_flat_od.nii.gz", "3-D", "(32, 24, 16, 2)"]),
    ("geninr", "output_under_a_file", ["blocker", "a part of the path is a file"]),
    ("singleinr", "output_under_a_file", ["blocker", "a part of the path is a file"]),
    ("predict", "output_under_a_file", ["blocker", "a part of the path is a file"]),
    ("atlas", "output_under_a_file", ["blocker", "a part of the path is a file"]),
    ("atlas_inference", "output_under_a_file", ["blocker", "a part of the path is a file"]),
    ("atlas_resolution", "output_under_a_file", ["blocker", "a part of the path is a file"]),
    ("pretrain_atlas", "output_under_a_file", ["blocker", "a part of the path is a file"]),
    ("export-npz", "output_under_a_file", ["blocker", "a file is in the way of a folder"]),
    ("folds", "output_under_a_file", ["blocker", "a part of the path is a file"]),
    ("phantom", "output_under_a_file", ["blocker", "a file is in the way of a folder"]),
    ("geninr", "read_only_output", ["readonly", "no permission"]),
    ("atlas", "read_only_output", ["readonly", "no permission"]),
    ("predict", "read_only_output", ["readonly", "no permission"]),
    ("export-npz", "read_only_output", ["readonly", "no permission"]),
    ("atlas", "network_too_large", ["DISP_MODEL.HIDDEN_SIZE = 1048576", "GiB", "smaller network"]),
    ("pretrain_atlas", "network_too_large", ["DISP_MODEL.HIDDEN_SIZE = 1048576", "GiB"]),
    ("atlas", "latent_codes_too_large", ["TRAINING.LATENT_CODE.SIZE = 1000000000", "GiB"]),
    ("geninr", "latent_codes_too_large", ["MODEL.HIDDEN_SIZE", "GiB"]),
    ("geninr", "batch_too_large", ["TRAINING.BATCH_POINTS = 2000000000", "GiB", "batch"]),
    ("geninr", "infinite_learning_rate", ["TRAINING.LEARNING_RATE = inf", "finite"]),
    ("atlas", "infinite_learning_rate", ["TRAINING.LEARNING_RATE = inf", "finite"]),
    ("atlas", "empty_test_fold", [FOLDS_FILE, "FOLD.0.TEST holds no eyes to evaluate"]),
    ("atlas_inference", "empty_test_fold", [FOLDS_FILE, "FOLD.0.TEST holds no eyes to evaluate"]),
    ("atlas", "factor_above_the_bscans", ["16 B-scans cannot be subsampled by 64", "RESOLUTION_FACTORS"]),
    ("atlas_resolution", "factor_above_the_bscans", ["16 B-scans cannot be subsampled by 64"]),
    ("singleinr", "network_too_large", ["MODEL.HIDDEN_SIZE = 1048576", "GiB"]),
    ("geninr", "subject_twice_in_fold", [FOLDS_FILE, "FOLD.0.TRAIN", "sub001 more than once"]),
    ("atlas", "subject_twice_in_fold", [FOLDS_FILE, "FOLD.0.TRAIN", "sub001 more than once"]),
    ("export-npz", "subject_twice_in_fold", [FOLDS_FILE, "FOLD.0.TRAIN", "sub001 more than once"]),
    ("geninr", "subject_in_both_fold_parts", [FOLDS_FILE, "sub001 in both TRAIN and TEST"]),
    ("atlas", "subject_in_both_fold_parts", [FOLDS_FILE, "sub001 in both TRAIN and TEST"]),
    ("phantom", "nan_pathology_fraction", ["pathology_fraction = nan", "finite"]),
    ("phantom", "phantom_too_large", ["(100000, 100000, 100000)", "GiB", "smaller shape"]),
    ("phantom", "phantom_one_fold", ["--folds 1", "at least 2"]),
    ("geninr", "unsafe_subject_in_container", [container_name(FACTOR, "train", 0), "'../x'"]),
    ("atlas", "nan_bscan_position", ["oct_flat_od.json", "positions_mm", "finite"]),
    ("predict", "nan_bscan_position", ["oct_flat_od.json", "positions_mm", "finite"]),
    ("predict", "oct_float64", ["oct_flat_od.nii.gz", "float64", "expected float32"]),
    ("singleinr", "oct_float64", ["oct_flat_od.nii.gz", "float64", "expected float32"]),
]


# --- the test -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory, phantom_tree) -> Path:
    """A GINR registration checkpoint of the tiny atlas config (untrained weights, the right classes)."""
    import lightning as L
    import torch

    from atlas_registration.config import AtlasConfig
    from atlas_registration.datasets.label_mapping import LabelMapping
    from atlas_registration.training import registration_module
    from retina_data.config import from_dict

    cfg = from_dict(atlas_config(phantom_tree, Path("unused")), AtlasConfig)
    module = registration_module(cfg, num_eyes=4, num_classes=LabelMapping.default().num_classes)
    path = tmp_path_factory.mktemp("checkpoint") / "last.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A gen-INR ``model.pt`` of the tiny interpolation config (untrained weights, 8-entry codes)."""
    from anisotropic_interpolation.config import ExperimentConfig
    from anisotropic_interpolation.model import NetworkInputs, build_network
    from anisotropic_interpolation.pipeline import save_model
    from retina_data.config import from_dict

    config = from_dict(interpolation_config("geninr", Path("unused"), Path("unused")), ExperimentConfig)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=8, num_classes=13))
    return save_model(tmp_path_factory.mktemp("model") / "model.pt", network, config, None, [])


def make_case(entry: str, tmp_path: Path, data_dir: Path, checkpoint: Path | None) -> Case:
    """The entry's working inputs: a private data copy, a tiny config and an output folder."""
    data = Path(shutil.copytree(data_dir, tmp_path / "data"))
    case = Case(entry, tmp_path, data, tmp_path / "output", checkpoint)
    if case.tree == "interpolation":
        case.config = interpolation_config(entry, data, tmp_path / "runs")
    elif case.tree == "atlas":
        case.config = atlas_config(data, tmp_path / "runs")
    return case


@pytest.mark.parametrize(("entry", "fault", "needles"), MATRIX, ids=[f"{e}-{f}" for e, f, _ in MATRIX])
def test_bad_input_gives_one_line_error_and_writes_nothing(
    entry, fault, needles, tmp_path, phantom_tree, launchers, request
):
    checkpoint = request.getfixturevalue("trained_checkpoint") if entry.startswith("atlas_") else None
    if entry in ("predict", "densify"):
        checkpoint = request.getfixturevalue("saved_model")
    case = make_case(entry, tmp_path, phantom_tree, checkpoint)
    if fault == "atlas_checkpoint":
        atlas_checkpoint_to_predict(case, request.getfixturevalue("trained_checkpoint"))
    elif fault == "interpolation_model":
        case.checkpoint = request.getfixturevalue("saved_model")
    else:
        FAULTS[fault](case)
    case.write_config()
    watched = case.data_dir if entry == "subsample" else case.output
    before = snapshot(watched)

    result = launchers(case.tree).run(case.argv(), tmp_path)

    lines = [line for line in PROGRESS_BAR.sub("\n", result.stderr).splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    missing = [word for word in needles if word not in lines[0]]
    assert not missing, f"{missing} not named in: {lines[0]}"
    assert entry != "predict" or "--resume" not in lines[0], "predict has no --resume to offer"
    assert snapshot(watched) == before


@pytest.mark.slow
def test_a_fresh_interpreter_answers_like_the_launcher(tmp_path, phantom_tree, launchers):
    case = make_case("geninr", tmp_path, phantom_tree, None)
    nan_intensities(case)
    case.write_config()

    forked = launchers(case.tree).run(case.argv(), tmp_path)
    fresh = run_entry(case.argv())

    assert (fresh.returncode, fresh.stderr) == (forked.returncode, forked.stderr)

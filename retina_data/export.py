"""Export of the reference fold containers from a NIfTI tree and its cross-validation folds."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from retina_data.containers import container_name, write_container
from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.files import refuse_existing, staged_folder
from retina_data.folds import fold_split, read_folds
from retina_data.tree import eye_files, list_eyes, read_eye


def read_subsampled_eye(data_dir: str | Path, subject: str, laterality: str, subsample: int) -> Eye:
    """The eye at every ``subsample``-th B-scan: its ``subsmpl<k>`` files if written, else subsampled now."""
    if subsample > 1 and eye_files(data_dir, subject, laterality, subsample).oct.is_file():
        return read_eye(data_dir, subject, laterality, subsample)
    return read_eye(data_dir, subject, laterality).subsample(subsample)


def export_containers(
    data_dir: str | Path,
    folds_file: str | Path,
    fold: int,
    subsample: int,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Write ``dataset_flat_subsmpl<k>_train_fold<f>.npz`` and ``..._test_fold<f>.npz``.

    The TRAIN and TEST subjects of fold ``fold`` (every eye of each) are stacked at every
    ``subsample``-th B-scan, with their dense SLO. Both targets are checked before either
    is written. Returns ``[train_path, test_path]``.
    """
    if subsample < 1:
        raise DataError(f"subsampling factor must be >= 1, got {subsample}")
    split = fold_split(read_folds(folds_file, data_dir), fold, folds_file)
    out_dir = Path(out_dir)
    targets = {name: out_dir / container_name(subsample, name, fold) for name in ("train", "test")}
    for path in targets.values():
        refuse_existing(path, overwrite)
    for name in targets:
        if not split[name.upper()]:
            raise DataError(f"{folds_file}: FOLD.{fold}.{name.upper()} is empty; nothing to export")
    eyes_on_disk = list_eyes(data_dir)
    with staged_folder(out_dir) as staging:  # both containers or neither
        for name, path in targets.items():
            wanted = [(s, lat) for s in split[name.upper()] for (t, lat) in eyes_on_disk if t == s]
            eyes = [
                read_subsampled_eye(data_dir, s, lat, subsample)
                for s, lat in tqdm(wanted, desc=f"export {name}", unit="eye", disable=not progress)
            ]
            write_container(staging / path.name, eyes, overwrite=True)
    return list(targets.values())

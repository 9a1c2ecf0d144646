"""Check a data set, one eye, one NIfTI file or one fold container, and name every problem.

:func:`validate` never stops at the first fault: it collects every :class:`Problem` (the
file it concerns and what was expected) so that one run lists all that needs fixing.

Checked: missing files, unreadable (truncated or corrupt) ``.nii.gz`` and ``.npz`` files,
array dimensions, shape agreement between OCT, labels and SLO, dtypes (tree files: OCT and
SLO float32, labels uint8; containers: OCT and en-face images of a float type, labels
integers or floats holding whole numbers, as the reference stores them), NaN/Inf, flattened
OCT outside [0, 1] (e.g. stored 0..255), labels outside ``0 .. len(label_names) - 1`` of
``dataset.yaml`` (13 classes by default), non-positive spacing, B-scan positions (finite,
increasing, shared by OCT and labels, subsampled B-scans at dense positions), duplicate
subject ids (also ones that differ only in letter case), and an empty data set.

The experiment scripts run the same array checks on the eyes they load
(:func:`require_valid_eyes`), before they write anything; only the [0, 1] range is left out
when the run min-max normalises every eye on load (the reference gen-INR's
``PREPROCESSING.MINMAX_NORMALISE``).
"""

from __future__ import annotations

import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from retina_data.containers import OPTIONAL_KEYS, REQUIRED_KEYS
from retina_data.errors import DataError
from retina_data.eye import LATERALITIES, Eye, positions_problem
from retina_data.eye_store import EyeInfo, EyeStore, is_store, local_path
from retina_data.labels import NUM_LAYER_CLASSES
from retina_data.nifti import Image, read_nifti, sidecar_path
from retina_data.tree import DATASET_FILE, eye_files, read_dataset_info

EXPECTED_DTYPES = {"oct": np.float32, "labels": np.uint8, "slo": np.float32}
"""dtypes of the tree's NIfTI files, as every importer writes them."""
CONTAINER_ARRAYS = {"oct": "oct_vols", "labels": "seg_vols", "slo": "enface_imgs"}
INTENSITY_TOLERANCE = 1e-6
"""How far flattened OCT may leave [0, 1] (rounding of a resampled volume)."""
NORMALISE_HINT = (
    "stored 0..255? re-import it, or set PREPROCESSING.MINMAX_NORMALISE: true to min-max normalise each eye on load"
)
EXPECTED_NDIM = {"oct": 3, "labels": 3, "slo": 2}
_SUBSAMPLED = re.compile(r"^oct(_seg)?_flat_subsmpl(\d+)_(od|os)\.nii\.gz$")


@dataclass(frozen=True)
class Problem:
    """One fault: the file (or folder) it concerns and what is wrong / was expected."""

    path: Path | str
    """The file or folder, or the URL of an eye store."""
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def validate(path: str | Path, *, progress: bool = False) -> list[Problem]:
    """Every problem found in a tree folder, an eye folder, a ``.nii.gz``, a ``.npz`` container or an
    eye store (a ``.zarr`` path or fsspec URL)."""
    if is_store(path):
        return validate_store(str(path), progress=progress)
    path = Path(path)
    if not path.exists():
        return [Problem(path, "not found; expected a data folder, an eye folder, a .nii.gz or a .npz file")]
    num_labels, problems = _label_count(path)
    if path.is_file():
        if path.name.endswith((".nii.gz", ".nii")):
            problems += validate_nifti_file(path, num_labels)
        elif path.suffix == ".npz":
            problems += validate_container(path, num_labels)
        else:
            problems.append(Problem(path, "unknown file type; expected .nii.gz or .npz"))
        return problems
    if _is_eye_folder(path):
        return problems + validate_eye_folder(path, num_labels)
    return problems + validate_tree(path, num_labels, progress=progress)


def validate_store(location: str, *, progress: bool = False) -> list[Problem]:
    """Problems of an eye store: its root and eye attributes, each eye's chunks (a missing or corrupt
    one named with its eye and B-scan) and, for each readable eye, the array checks of
    :func:`eye_problems`; groups not listed in the root attributes are reported too."""
    local = local_path(location)
    where: Path | str = location if local is None else Path(location)
    prefix = f"{location}: "
    try:
        store = EyeStore.open(location)
    except DataError as exc:
        return [Problem(where, str(exc).removeprefix(prefix))]
    problems = [
        Problem(where, f"group {name!r} is not listed in the root attribute eye_ids; expected only the listed eyes")
        for name in store.unlisted_groups()
    ]
    for eye_id in tqdm(store.eye_ids, desc="validate", unit="eye", disable=not progress):
        try:
            info = store.info(eye_id)
        except DataError as exc:
            problems.append(Problem(where, str(exc).removeprefix(prefix)))
            continue
        try:
            eye = store.read_eye(eye_id)
        except DataError as exc:
            problems += _damaged_bscans(store, info, where) or [Problem(where, str(exc).removeprefix(prefix))]
            continue
        problems += eye_problems(eye, "store", where, num_labels=store.num_labels)
    return problems


def _damaged_bscans(store: EyeStore, info: EyeInfo, where: Path | str) -> list[Problem]:
    """One problem per B-scan of the eye whose OCT or label chunk is missing or corrupt."""
    problems = []
    for bscan in range(info.shape[2]):
        try:
            store.read_bscans(info.eye_id, [bscan])
        except DataError as exc:
            problems.append(Problem(where, str(exc).removeprefix(f"{store.location}: ")))
    return problems


def _is_eye_folder(folder: Path) -> bool:
    return folder.name in LATERALITIES or any(folder.glob("oct_flat_*.nii.gz"))


def label_count(path: Path) -> int:
    """Number of label names in the nearest ``dataset.yaml`` (13 without one); a broken one raises
    :class:`DataError`."""
    count, problems = _label_count(Path(path))
    if problems:
        raise DataError(str(problems[0]))
    return count


def _label_count(path: Path) -> tuple[int, list[Problem]]:
    """Number of label names in the nearest ``dataset.yaml`` (this folder or up to 3 above)."""
    start = path if path.is_dir() else path.parent
    for folder in [start, *list(start.parents)[:3]]:
        if (folder / DATASET_FILE).is_file():
            try:
                return len(read_dataset_info(folder)["label_names"]), []
            except DataError as exc:
                return NUM_LAYER_CLASSES, [Problem(folder / DATASET_FILE, str(exc))]
    return NUM_LAYER_CLASSES, []


def validate_tree(data_dir: Path, num_labels: int = NUM_LAYER_CLASSES, *, progress: bool = False) -> list[Problem]:
    """Problems of a whole ``DATA_DIR/<subject>/<OD|OS>/`` tree (see module doc)."""
    problems: list[Problem] = []
    subjects = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    seen: dict[str, Path] = {}
    eye_dirs: list[Path] = []
    for subject_dir in subjects:
        key = subject_dir.name.casefold()
        if key in seen:
            problems.append(
                Problem(
                    subject_dir,
                    f"subject id {subject_dir.name!r} duplicates "
                    f"{seen[key].name!r}; subject ids must be unique "
                    "(ignoring letter case)",
                )
            )
        seen.setdefault(key, subject_dir)
        found = False
        for child in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
            if child.name in LATERALITIES:
                eye_dirs.append(child)
                found = True
            else:
                problems.append(
                    Problem(child, f"unexpected folder; expected eye folders named {' or '.join(LATERALITIES)}")
                )
        if not found:
            problems.append(Problem(subject_dir, "no eye folder; expected <subject>/OD or <subject>/OS"))
    if not eye_dirs:
        problems.append(Problem(data_dir, "empty data set: no <subject>/<OD|OS>/oct_flat_<od|os>.nii.gz found"))
    for eye_dir in tqdm(eye_dirs, desc="validate", unit="eye", disable=not progress):
        problems += validate_eye_folder(eye_dir, num_labels)
    return problems


def validate_eye_folder(folder: Path, num_labels: int = NUM_LAYER_CLASSES) -> list[Problem]:
    """Problems of one ``<subject>/<OD|OS>/`` folder: its dense and subsampled volumes and SLO."""
    laterality = folder.name
    if laterality not in LATERALITIES:
        return [Problem(folder, f"eye folder must be named {' or '.join(LATERALITIES)}")]
    problems: list[Problem] = []
    dense = eye_files(folder.parent.parent, folder.parent.name, laterality)
    oct_image = _read_checked(dense.oct, "oct", num_labels, problems, required=True)
    labels = _read_checked(dense.labels, "labels", num_labels, problems)
    slo = _read_checked(dense.slo, "slo", num_labels, problems)
    if oct_image is not None:
        if labels is not None:
            _check_agreement(oct_image, dense.oct, labels, dense.labels, problems)
        if slo is not None:
            _check_slo(oct_image, dense.oct, slo, dense.slo, problems)
    factors = sorted(
        {
            int(m.group(2))
            for p in folder.iterdir()
            if (m := _SUBSAMPLED.match(p.name)) and m.group(3) == laterality.lower()
        }
    )
    for k in factors:
        files = eye_files(folder.parent.parent, folder.parent.name, laterality, k)
        sub_oct = _read_checked(files.oct, "oct", num_labels, problems, required=True)
        sub_labels = _read_checked(files.labels, "labels", num_labels, problems)
        if sub_oct is None:
            continue
        if sub_labels is not None:
            _check_agreement(sub_oct, files.oct, sub_labels, files.labels, problems)
        if oct_image is not None:
            _check_subsampled(oct_image, sub_oct, files.oct, k, problems)
    return problems


def validate_nifti_file(path: Path, num_labels: int = NUM_LAYER_CLASSES) -> list[Problem]:
    """Problems of one NIfTI file; its role (OCT, labels, SLO) is read from its name."""
    problems: list[Problem] = []
    _read_checked(path, _kind_of(path.name), num_labels, problems, required=True)
    return problems


def _kind_of(name: str) -> str | None:
    if name.startswith("oct_seg"):
        return "labels"
    if name.startswith("slo"):
        return "slo"
    if name.startswith("oct"):
        return "oct"
    return None


def _read_checked(
    path: Path, kind: str | None, num_labels: int, problems: list[Problem], required: bool = False
) -> Image | None:
    """Read one NIfTI and check its array and spacing; ``None`` when absent or unreadable."""
    if not path.is_file():
        if required:
            what = {"oct": "OCT volume", "labels": "label volume", "slo": "SLO image"}.get(kind or "", "file")
            problems.append(Problem(path, f"missing {what} (expected {path.name})"))
        return None
    try:
        image = read_nifti(path)
    except DataError as exc:
        problems.append(Problem(path, str(exc).removeprefix(f"{path}: ")))
        return None
    _check_array(path, image.array, kind, num_labels, problems)
    _check_spacing(path, image.spacing, problems)
    problem = positions_problem(np.asarray(image.positions, dtype=np.float64), "slice positions along the last axis")
    if problem is not None:
        problems.append(Problem(path, problem))
    expected_ndim = EXPECTED_NDIM.get(kind or "", image.array.ndim)
    return image if image.array.ndim in (expected_ndim, 3) else None


def _check_array(
    path: Path,
    array: np.ndarray,
    kind: str | None,
    num_labels: int,
    problems: list[Problem],
    name: str = "array",
    intensity_range: bool = True,
) -> None:
    """dtype, dimensions, NaN/Inf, the [0, 1] range of OCT (``intensity_range``) and label range of
    one tree array of role ``kind``."""
    if kind is not None:
        if kind == "slo" and array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        expected_ndim = EXPECTED_NDIM[kind]
        if array.ndim != expected_ndim:
            axes = {3: "[H, W, D]", 2: "[W, D]"}[expected_ndim]
            problems.append(Problem(path, f"{name} has shape {array.shape}; expected {expected_ndim}-D {axes}"))
        _check_dtype(path, array, kind, name, problems)
    _check_values(path, array, kind, num_labels, problems, name, intensity_range)


def _check_values(
    path: Path | str,
    array: np.ndarray,
    kind: str | None,
    num_labels: int,
    problems: list[Problem],
    name: str,
    intensity_range: bool,
) -> None:
    """NaN/Inf; flattened OCT in [0, 1] (``intensity_range``); labels in ``0..num_labels - 1``."""
    finite = True
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            finite = False
            problems.append(
                Problem(
                    path,
                    f"{name} holds {int(np.isnan(array).sum())} NaN and "
                    f"{int(np.isinf(array).sum())} Inf values; expected finite values",
                )
            )
    if kind == "oct" and intensity_range and finite and array.size and np.issubdtype(array.dtype, np.number):
        low, high = float(array.min()), float(array.max())
        if low < -INTENSITY_TOLERANCE or high > 1 + INTENSITY_TOLERANCE:
            problems.append(
                Problem(
                    path, f"{name} values {low:.4g}..{high:.4g}; expected flattened OCT in [0, 1] ({NORMALISE_HINT})"
                )
            )
    if kind == "labels":
        _check_label_range(path, array, num_labels, problems, name)


def _check_label_range(
    path: Path | str, labels: np.ndarray, num_labels: int, problems: list[Problem], name: str
) -> None:
    if labels.size == 0 or not np.issubdtype(labels.dtype, np.number):
        return
    finite = labels[np.isfinite(labels)] if np.issubdtype(labels.dtype, np.floating) else labels
    values = np.unique(finite)
    outside = values[(values < 0) | (values > num_labels - 1) | (values != np.round(values))]
    if outside.size:
        shown = ", ".join(str(v) for v in outside[:10].tolist())
        problems.append(
            Problem(
                path,
                f"{name} holds label value(s) {shown} outside 0..{num_labels - 1} "
                f"({num_labels} label names in {DATASET_FILE})",
            )
        )


def _check_spacing(
    path: Path, spacing: tuple[float, ...] | np.ndarray, problems: list[Problem], name: str = "spacing"
) -> None:
    values = np.asarray(spacing, dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        problems.append(Problem(path, f"{name} {tuple(values.tolist())} mm; expected positive finite values"))


def _check_agreement(
    oct_image: Image, oct_path: Path, labels: Image, labels_path: Path, problems: list[Problem]
) -> None:
    """Labels must match the OCT in shape, spacing and B-scan positions."""
    if labels.array.shape != oct_image.array.shape:
        problems.append(
            Problem(
                labels_path,
                f"label shape {labels.array.shape} does not match OCT shape {oct_image.array.shape} of {oct_path.name}",
            )
        )
        return
    if min(oct_image.spacing) > 0 and not np.allclose(labels.spacing, oct_image.spacing, rtol=1e-5):
        problems.append(
            Problem(
                labels_path,
                f"spacing {labels.spacing} mm differs from OCT spacing {oct_image.spacing} mm of {oct_path.name}",
            )
        )
    if not np.allclose(labels.positions, oct_image.positions, atol=1e-6):
        problems.append(Problem(labels_path, f"B-scan positions differ from those of {oct_path.name}"))


def _check_slo(oct_image: Image, oct_path: Path, slo: Image, slo_path: Path, problems: list[Problem]) -> None:
    """The SLO must be ``[W, D]``, or ``[W, Ds]`` on its own grid given by its sidecar's positions."""
    array = slo.array[..., 0] if slo.array.ndim == 3 else slo.array
    _, width, depth = oct_image.array.shape
    if array.shape[0] != width:
        problems.append(
            Problem(
                slo_path,
                f"SLO shape {array.shape} does not match the OCT {oct_path.name}: "
                f"expected [W={width}, D] with W the OCT width",
            )
        )
    if array.shape[1] != depth and not sidecar_path(slo_path).is_file():
        problems.append(
            Problem(
                slo_path,
                f"SLO has {array.shape[1]} columns for {depth} B-scans in {oct_path.name}; expected [W, D={depth}]",
            )
        )


def _check_subsampled(dense: Image, sub: Image, sub_path: Path, factor: int, problems: list[Problem]) -> None:
    """A subsampled volume: same ``H, W`` as the dense one, B-scans at dense B-scan positions."""
    if sub.array.ndim != 3 or dense.array.ndim != 3:
        return
    if sub.array.shape[:2] != dense.array.shape[:2]:
        problems.append(
            Problem(
                sub_path, f"B-scan size {sub.array.shape[:2]} differs from the dense volume's {dense.array.shape[:2]}"
            )
        )
    distance = np.abs(sub.positions[:, None] - dense.positions[None, :]).min(axis=1)
    if np.any(distance > 1e-6):
        problems.append(
            Problem(
                sub_path,
                f"{int((distance > 1e-6).sum())} B-scan position(s) are not positions "
                "of the dense volume; expected every "
                f"{factor}-th dense B-scan at its original position",
            )
        )


def validate_container(path: Path, num_labels: int = NUM_LAYER_CLASSES) -> list[Problem]:
    """Problems of one reference fold container (``.npz``)."""
    problems: list[Problem] = []
    arrays: dict[str, np.ndarray] = {}
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return [Problem(path, "holds a single array (a .npy file named .npz?); expected an .npz container")]
        with loaded as data:
            for key in data.files:
                try:
                    arrays[key] = data[key]
                except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                    problems.append(Problem(path, f"array {key!r} cannot be read (truncated or corrupt?): {exc}"))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        return [Problem(path, f"cannot read .npz container (truncated or corrupt?): {exc}")]
    known = REQUIRED_KEYS + OPTIONAL_KEYS
    for key in REQUIRED_KEYS:
        if key not in arrays and not any(p.message.startswith(f"array {key!r}") for p in problems):
            problems.append(Problem(path, f"missing key {key!r}; expected keys {', '.join(known)}"))
    for key in arrays:
        if key not in known:
            problems.append(Problem(path, f"unexpected key {key!r}; expected keys {', '.join(known)}"))
    oct_vols = arrays.get("oct_vols")
    if oct_vols is not None:
        _check_container_dtype(path, oct_vols, "oct", problems)
        _check_values(path, oct_vols, "oct", num_labels, problems, "oct_vols", True)
        if oct_vols.ndim != 4:
            problems.append(Problem(path, f"oct_vols has shape {oct_vols.shape}; expected [N, H, W, D]"))
            oct_vols = None
    if "seg_vols" in arrays:
        seg = arrays["seg_vols"]
        _check_container_dtype(path, seg, "labels", problems)
        _check_label_range(path, seg, num_labels, problems, "seg_vols")
        if oct_vols is not None and seg.shape != oct_vols.shape:
            problems.append(Problem(path, f"seg_vols shape {seg.shape} does not match oct_vols shape {oct_vols.shape}"))
    if "enface_imgs" in arrays:
        enface = arrays["enface_imgs"]
        _check_container_dtype(path, enface, "slo", problems)
        _check_values(path, enface, "slo", num_labels, problems, "enface_imgs", True)
        if oct_vols is not None and (enface.ndim != 3 or enface.shape[:2] != oct_vols.shape[:1] + oct_vols.shape[2:3]):
            problems.append(
                Problem(
                    path,
                    f"enface_imgs shape {enface.shape} does not match oct_vols shape "
                    f"{oct_vols.shape}; expected [N, W, D]",
                )
            )
    if "subject_names" in arrays:
        _check_subject_names(path, arrays["subject_names"], None if oct_vols is None else oct_vols.shape[0], problems)
    if "spacing_oct" in arrays:
        spacing = arrays["spacing_oct"]
        if spacing.shape != (3,) or not np.issubdtype(spacing.dtype, np.number):
            problems.append(
                Problem(
                    path, f"spacing_oct has shape {spacing.shape} and dtype {spacing.dtype}; expected 3 numbers (mm)"
                )
            )
        else:
            _check_spacing(path, spacing, problems, "spacing_oct")
    return problems


def _check_dtype(path: Path | str, array: np.ndarray, kind: str, name: str, problems: list[Problem]) -> None:
    """A tree array: exactly :data:`EXPECTED_DTYPES`."""
    expected = np.dtype(EXPECTED_DTYPES[kind])
    if array.dtype != expected:
        problems.append(Problem(path, f"{name} has dtype {array.dtype}; expected {expected}"))


def _check_container_dtype(
    path: Path | str, array: np.ndarray, kind: str, problems: list[Problem], name: str | None = None
) -> None:
    """A container array: OCT and en-face images of a float type, labels integers or floats
    (whole numbers, checked with the label range), as the reference writes them."""
    name = name or CONTAINER_ARRAYS[kind]
    allowed = (np.integer, np.floating) if kind == "labels" else (np.floating,)
    if not any(np.issubdtype(array.dtype, kind_) for kind_ in allowed):
        expected = "integers (or floats holding whole numbers)" if kind == "labels" else "a float type"
        problems.append(Problem(path, f"{name} has dtype {array.dtype}; expected {expected}"))


def eye_problems(
    eye: Eye,
    source: str,
    where: Path | str,
    *,
    num_labels: int = NUM_LAYER_CLASSES,
    intensity_range: bool = True,
    subsample: int = 1,
) -> list[Problem]:
    """The array checks of :func:`validate` on an eye as loaded, from a tree (``source = "tree"``,
    ``where`` the data folder; ``subsample``: read from its ``oct_flat_subsmpl<k>`` files), a
    container (``"container"``, ``where`` the ``.npz``) or an eye store (``"store"``, ``where`` its
    path or URL; the tree's dtypes): dtypes, NaN/Inf, flattened OCT in [0, 1]
    (unless ``intensity_range`` is off because the run normalises each eye on load), labels in
    ``0..num_labels - 1`` and finite positions."""
    problems: list[Problem] = []
    arrays = {"oct": eye.oct, "labels": eye.labels, "slo": eye.slo}
    for kind, array in arrays.items():
        if array is None:
            continue
        if source == "tree":
            path = getattr(eye_files(where, eye.subject, eye.laterality, subsample), kind)
            _check_dtype(path, array, kind, "array", problems)
            name = "array"
        elif source == "store":
            path, name = where, f"{kind} of eye {eye.eye_id}"
            _check_dtype(path, array, kind, name, problems)
        else:
            path, name = where, f"{CONTAINER_ARRAYS[kind]} of {eye.meta.get('container_name', eye.eye_id)}"
            _check_container_dtype(path, array, kind, problems, name)
        _check_values(path, array, kind, num_labels, problems, name, intensity_range)
    for positions, what in ((eye.bscan_positions, "B-scan positions"), (eye.slo_positions, "SLO positions")):
        problem = None if positions is None else positions_problem(positions, what)
        if problem is not None:
            problems.append(Problem(where, f"eye {eye.eye_id}: {problem}"))
    return problems


def require_valid_eyes(problems: list[Problem], data_dir: Path | str) -> None:
    """Raise :class:`DataError` with the first of ``problems`` (and how many more there are, with
    the ``validate`` command that lists them: of the container at fault, or of ``data_dir``)."""
    if problems:
        first = problems[0]
        target = first.path if str(first.path).endswith(".npz") else data_dir
        more = (
            (f" (and {len(problems) - 1} more problem(s); `python -m retina_data validate {target}` lists them all)")
            if len(problems) > 1
            else ""
        )
        raise DataError(f"{first}{more}")


def _check_subject_names(path: Path, names: np.ndarray, count: int | None, problems: list[Problem]) -> None:
    if count is not None and names.shape != (count,):
        problems.append(
            Problem(path, f"subject_names has shape {names.shape}; expected ({count},) (one name per volume)")
        )
    seen: dict[str, str] = {}
    for name in (str(n) for n in names.reshape(-1)):
        key = name.casefold()
        if key in seen:
            problems.append(
                Problem(path, f"duplicate subject id {name!r} (same as {seen[key]!r}, ignoring letter case)")
            )
        seen.setdefault(key, name)

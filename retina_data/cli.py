"""``python -m retina_data``: make, import, check, subsample, split and export data sets.

Each sub-command parses its arguments and calls library functions; user errors raise a
:class:`~retina_data.errors.RetinaError` that :func:`retina_data.commandline.run_cli` turns
into one line and exit code 2. Nothing existing is overwritten without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from retina_data.containers import read_container
from retina_data.errors import DataError, OutputExistsError
from retina_data.eye import LATERALITIES, Eye
from retina_data.files import refuse_existing, staged_folder
from retina_data.tree import (
    DATASET_FILE,
    list_eyes,
    read_dataset_info,
    read_eye,
    refuse_existing_eye,
    write_dataset_info,
    write_eye,
)

EXIT_PROBLEMS = 2


def _add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m retina_data", description="Make, import, check, subsample, split and export OCT data sets."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("phantom", help="write a seeded phantom data set (NIfTI tree + folds)")
    p.add_argument("out", type=Path, help="output data folder")
    p.add_argument("--subjects", type=int, default=None, help="number of subjects (2 eyes each)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("H", "W", "D"), default=None, help="volume shape")
    p.add_argument("--seed", type=int, default=None, help="random seed (same seed, same bytes)")
    p.add_argument("--pathology-fraction", type=float, default=None, help="fraction of eyes with fluid")
    p.add_argument("--paper-shape", action="store_true", help="paper-sized volumes instead of the small default")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds written beside the data (default 5)")
    _add_overwrite(p)
    p.set_defaults(run=_phantom)

    p = commands.add_parser(
        "validate", help="check a tree, eye folder, .nii.gz, .npz or eye store and list every problem"
    )
    p.add_argument("path", help="data folder, eye folder, .nii.gz, .npz container or eye store (.zarr path or URL)")
    p.set_defaults(run=_validate)

    p = commands.add_parser("store", help="write a chunked eye store (.zarr) from a tree or .npz containers")
    p.add_argument("sources", type=Path, nargs="+", help="a retina_data tree folder or .npz fold containers")
    p.add_argument("out", help="the store to write: a path ending .zarr or an fsspec URL")
    p.add_argument("--subsample", type=int, default=1, help="keep every k-th B-scan (default 1: all)")
    _add_overwrite(p)
    p.set_defaults(run=_store)

    p = commands.add_parser("import", help="import a scanner export, a public data set's file or a B-scan image stack")
    sources = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    s = sources.add_parser("spectralis", help="Heidelberg .vol, .e2e or XML export (needs eyepy)")
    s.add_argument("file", type=Path, help=".vol, .e2e or .xml file (or XML export folder)")
    s.add_argument("out_dir", type=Path, help="data folder to add the eye to")
    s.add_argument("--subject", default=None, help="subject id (default: the file name)")
    s.add_argument("--laterality", choices=LATERALITIES, default=None, help="override the file's laterality")
    s.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("dH", "dW", "dD"),
        default=None,
        help="voxel size in mm (needed when the file stores none, e.g. .e2e)",
    )
    _add_flatten(s)
    _add_overwrite(s)
    s.set_defaults(run=_import_spectralis)
    s = sources.add_parser("stack", help="folder of PNG/TIFF B-scans or a multi-page TIFF")
    s.add_argument("folder", type=Path, help="B-scan images (natural filename order) or multi-page TIFF")
    s.add_argument("out_dir", type=Path, help="data folder to add the eye to")
    s.add_argument("--spacing", type=float, nargs=3, metavar=("dH", "dW", "dD"), required=True, help="voxel size in mm")
    s.add_argument("--subject", required=True, help="subject id")
    s.add_argument("--laterality", choices=LATERALITIES, required=True, help="OD (right) or OS (left)")
    s.add_argument("--labels", type=Path, default=None, help="label stack of the same shape")
    s.add_argument("--slo", type=Path, default=None, help="en-face SLO image (rows = B-scans)")
    s.add_argument(
        "--label-colours",
        type=Path,
        default=None,
        help="colour table {label: [R, G, B]} (YAML/JSON) for colour label images",
    )
    _add_flatten(s)
    _add_overwrite(s)
    s.set_defaults(run=_import_stack)
    s = sources.add_parser("dicom", help="DICOM Ophthalmic Tomography with its SLO (needs pydicom)")
    s.add_argument("file", type=Path, help="OPT instance (.dcm)")
    s.add_argument("out_dir", type=Path, help="data folder to add the eye to")
    s.add_argument("--subject", required=True, help="subject id")
    s.add_argument("--laterality", choices=LATERALITIES, default=None, help="override the file's Image Laterality")
    s.add_argument(
        "--slo",
        type=Path,
        default=None,
        help="the referenced Ophthalmic Photography SLO (default: found beside the file)",
    )
    _add_flatten(s)
    _add_overwrite(s)
    s.set_defaults(run=_import_dicom)
    for name, what in (
        ("duke-amd", "Duke AMD (Farsiu 2013) .mat file"),
        ("duke-dme", "Duke DME (Chiu 2014) .mat file"),
        ("retouch", "RETOUCH case folder (oct.mhd, reference.mhd)"),
    ):
        s = sources.add_parser(name, help=what + ("" if name == "retouch" else " (needs eyepy)"))
        s.add_argument("file", type=Path, help=what)
        s.add_argument("out_dir", type=Path, help="data folder to add the eye to")
        s.add_argument("--subject", required=True, help="subject id")
        s.add_argument(
            "--laterality",
            choices=LATERALITIES,
            required=True,
            help="OD (right) or OS (left): the set does not store it",
        )
        if name != "retouch":
            s.add_argument(
                "--all-bscans",
                action="store_true",
                help="keep every B-scan, without labels (default: only the annotated ones, labelled)",
            )
        if name == "duke-dme":
            s.add_argument(
                "--grader",
                choices=("manual1", "manual2", "automatic"),
                default="manual1",
                help="whose layers and fluid: expert 1 (default), expert 2 or the paper's automatic ones",
            )
        _add_flatten(s)
        _add_overwrite(s)
        s.set_defaults(run=_import_public_set)

    p = commands.add_parser("subsample", help="write every-k-th-B-scan files (oct_flat_subsmpl<k>_...)")
    p.add_argument("data_dir", type=Path)
    p.add_argument("--factor", type=int, action="append", required=True, help="factor k >= 2 (repeatable)")
    _add_overwrite(p)
    p.set_defaults(run=_subsample)

    p = commands.add_parser("folds", help="subject-level k-fold split (cross-validation-folds.yml)")
    p.add_argument("data_dir", type=Path, help="a retina_data tree or an eye store (.zarr)")
    p.add_argument("--k", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, required=True, help="folds file to write")
    _add_overwrite(p)
    p.set_defaults(run=_folds)

    p = commands.add_parser("export-npz", help="write the reference .npz fold containers")
    p.add_argument("data_dir", type=Path)
    p.add_argument("--folds", type=Path, required=True, help="cross-validation-folds.yml")
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--subsample", type=int, required=True, help="B-scan subsampling factor k")
    p.add_argument("--output", type=Path, required=True, help="output folder")
    _add_overwrite(p)
    p.set_defaults(run=_export)

    p = commands.add_parser("info", help="summary of a tree, eye folder, .nii.gz, .npz container or eye store")
    p.add_argument("path", help="data folder, eye folder, .nii.gz, .npz container or eye store (.zarr path or URL)")
    p.set_defaults(run=_info)

    p = commands.add_parser("figure", help="overview figure of one eye of a data set")
    p.add_argument("data_dir", type=Path)
    p.add_argument("--output", type=Path, required=True, help="PNG file to write")
    p.add_argument("--eye", default=None, help="SUBJECT_LAT, e.g. sub001_OD (default: the first eye)")
    _add_overwrite(p)
    p.set_defaults(run=_figure)

    p = commands.add_parser("thickness", help="layer thickness maps and ETDRS-grid tables of labelled eyes")
    p.add_argument("data_dir", type=Path)
    p.add_argument("--output", type=Path, required=True, help="folder for <eye>_etdrs.csv, maps and figures")
    p.add_argument("--eye", default=None, help="SUBJECT_LAT, e.g. sub001_OD (default: every labelled eye)")
    _add_overwrite(p)
    p.set_defaults(run=_thickness)
    return parser


def _add_flatten(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--flatten",
        choices=("auto", "labels", "detect", "none"),
        default="auto",
        help="flatten at Bruch's membrane from the RPE labels or found in the image "
        "(auto: labels when they hold the RPE, else detection; none: store as scanned)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


def _phantom(args: argparse.Namespace) -> int:
    from retina_data.folds import FOLDS_FILE, write_folds_for_tree
    from retina_data.phantom import PhantomConfig, paper_shape_config, write_phantom

    if args.paper_shape and args.shape:
        raise DataError("give either --shape or --paper-shape, not both")
    options = {
        "n_subjects": args.subjects,
        "seed": args.seed,
        "pathology_fraction": args.pathology_fraction,
        "shape": tuple(args.shape) if args.shape else None,
    }
    options = {k: v for k, v in options.items() if v is not None}
    cfg = paper_shape_config(**options) if args.paper_shape else PhantomConfig(**options)
    if cfg.n_subjects >= 2 and args.folds < 2:
        raise DataError(f"--folds {args.folds}: expected at least 2 cross-validation folds")
    folds_path = args.out / FOLDS_FILE
    refuse_existing(folds_path, args.overwrite)
    write_phantom(args.out, cfg, overwrite=args.overwrite, progress=True)
    if cfg.n_subjects < 2:
        print(f"wrote 1 subject to {args.out}; no cross-validation folds for a single subject")
        return 0
    write_folds_for_tree(args.out, folds_path, k=args.folds, seed=cfg.seed, overwrite=args.overwrite)
    print(f"wrote {cfg.n_subjects} subjects to {args.out} and {min(args.folds, cfg.n_subjects)} folds to {folds_path}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from retina_data.validation import validate

    problems = validate(args.path, progress=True)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.path}", file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"{args.path}: no problems found")
    return 0


def _save_imported(eye: Eye, out_dir: Path, source: str, overwrite: bool, flatten: str = "auto") -> None:
    from retina_data.preprocessing import flatten_imported

    eye = flatten_imported(eye, flatten)
    refuse_existing_eye(out_dir, eye, overwrite=overwrite)
    with staged_folder(out_dir) as staging:  # the whole eye or nothing: a failed write leaves no part of it
        staged = write_eye(staging, eye, overwrite=True)
        if not (out_dir / DATASET_FILE).exists():
            write_dataset_info(staging, out_dir.name, provenance={"import": source})
    paths = [out_dir / path.relative_to(staging) for path in staged]
    for note in eye.meta.get("import_notes", []):
        print(f"note: {note}")
    print(f"wrote eye {eye.eye_id} {eye.shape} (H, W, D) spacing {eye.spacing} mm: " + ", ".join(str(p) for p in paths))


def _import_spectralis(args: argparse.Namespace) -> int:
    from retina_data.importers.spectralis import import_spectralis

    eye = import_spectralis(
        args.file,
        subject=args.subject,
        laterality=args.laterality,
        spacing=tuple(args.spacing) if args.spacing else None,
    )
    _save_imported(eye, args.out_dir, f"spectralis {args.file}", args.overwrite, args.flatten)
    return 0


def _import_stack(args: argparse.Namespace) -> int:
    from retina_data.importers.stacks import import_stack

    eye = import_stack(
        args.folder,
        tuple(args.spacing),
        args.subject,
        args.laterality,
        labels=args.labels,
        slo=args.slo,
        label_colours=args.label_colours,
    )
    _save_imported(eye, args.out_dir, f"stack {args.folder}", args.overwrite, args.flatten)
    return 0


def _import_dicom(args: argparse.Namespace) -> int:
    from retina_data.importers.dicom_oct import import_dicom_oct

    eye = import_dicom_oct(args.file, args.subject, laterality=args.laterality, slo=args.slo)
    _save_imported(eye, args.out_dir, f"dicom {args.file}", args.overwrite, args.flatten)
    return 0


def _import_public_set(args: argparse.Namespace) -> int:
    if args.source == "retouch":
        from retina_data.importers.retouch import import_retouch

        eye = import_retouch(args.file, args.subject, args.laterality)
    elif args.source == "duke-amd":
        from retina_data.importers.duke import import_duke_amd

        eye = import_duke_amd(args.file, args.subject, args.laterality, annotated_only=not args.all_bscans)
    else:
        from retina_data.importers.duke import import_duke_dme

        eye = import_duke_dme(
            args.file, args.subject, args.laterality, grader=args.grader, annotated_only=not args.all_bscans
        )
    _save_imported(eye, args.out_dir, f"{args.source} {args.file}", args.overwrite, args.flatten)
    return 0


def _subsample(args: argparse.Namespace) -> int:
    from retina_data.preprocessing import write_subsampled

    written = write_subsampled(args.data_dir, args.factor, overwrite=args.overwrite)
    print(f"wrote {len(written)} files for factor(s) {', '.join(map(str, args.factor))}")
    return 0


def _folds(args: argparse.Namespace) -> int:
    from retina_data.eye_store import EyeStore, is_store
    from retina_data.folds import make_folds, subjects_on_disk, write_folds

    if is_store(args.data_dir):
        subjects = sorted({eye_id.rsplit("_", 1)[0] for eye_id in EyeStore.open(args.data_dir).eye_ids})
    else:
        subjects = subjects_on_disk(args.data_dir)
    path = write_folds(args.output, make_folds(subjects, args.k, args.seed), overwrite=args.overwrite)
    print(f"wrote {args.k} folds to {path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from retina_data.export import export_containers

    for path in export_containers(
        args.data_dir, args.folds, args.fold, args.subsample, args.output, overwrite=args.overwrite
    ):
        print(f"wrote {path}")
    return 0


def describe_eye(eye: Eye) -> str:
    """One line: id, shape, spacing, labels present, SLO."""
    labels = "none" if eye.labels is None else " ".join(str(v) for v in np.unique(eye.labels))
    slo = "none" if eye.slo is None else f"{eye.slo.shape[0]}x{eye.slo.shape[1]}"
    spacing = ", ".join(f"{s:.5g}" for s in eye.spacing)
    return (
        f"{eye.eye_id}: shape (H, W, D) {eye.shape}, spacing ({spacing}) mm, "
        f"B-scans {eye.bscan_positions[0]:.4g}..{eye.bscan_positions[-1]:.4g} mm, "
        f"labels {labels}, SLO {slo}"
    )


def _info(args: argparse.Namespace) -> int:
    from retina_data.eye_store import is_store

    if is_store(args.path):
        return _store_info(args.path)
    path = Path(args.path)
    if path.suffix == ".npz":
        eyes = read_container(path)
        print(f"{path}: fold container with {len(eyes)} eye(s)")
    elif path.name.endswith((".nii.gz", ".nii")):
        from retina_data.nifti import read_nifti

        image = read_nifti(path)
        print(
            f"{path}: shape {image.array.shape}, dtype {image.array.dtype}, spacing {image.spacing} mm, "
            f"range {image.array.min()}..{image.array.max()}"
        )
        return 0
    elif path.is_dir() and path.name in LATERALITIES:
        eyes = [read_eye(path.parent.parent, path.parent.name, path.name)]
    else:
        found = list_eyes(path)
        if not found:
            raise DataError(f"{path}: no eyes found")
        info = read_dataset_info(path)
        subjects = sorted({s for s, _ in found})
        print(
            f"{path}: data set {info.get('name')!r}, {len(subjects)} subject(s), {len(found)} eye(s), "
            f"{len(info['label_names'])} label names"
        )
        eyes = [read_eye(path, s, lat) for s, lat in found]
    for eye in eyes:
        print("  " + describe_eye(eye))
    return 0


def _store_info(location: str) -> int:
    """Describe an eye store from its metadata alone (no chunk is read)."""
    from retina_data.eye_store import FORMAT_VERSION, EyeStore

    store = EyeStore.open(location)
    subjects = {eye_id.rsplit("_", 1)[0] for eye_id in store.eye_ids}
    print(
        f"{location}: eye store (format {FORMAT_VERSION}), {len(subjects)} subject(s), {len(store)} eye(s), "
        f"{store.num_labels} label classes"
    )
    for eye_id in store.eye_ids:
        info = store.info(eye_id)
        spacing = ", ".join(f"{s:.5g}" for s in info.spacing)
        slo = "none" if info.slo_positions is None else f"{info.shape[1]}x{info.slo_positions.size}"
        print(
            f"  {eye_id}: shape (H, W, D) {info.shape}, spacing ({spacing}) mm, B-scans "
            f"{info.bscan_positions[0]:.4g}..{info.bscan_positions[-1]:.4g} mm, "
            f"labels {'yes' if info.has_labels else 'none'}, SLO {slo}"
        )
    return 0


def _source_eyes(sources: list[Path], subsample: int) -> Iterator[Eye]:
    """The eyes of tree folders and ``.npz`` containers, one at a time, every ``subsample``-th B-scan."""
    for source in sources:
        if source.suffix == ".npz":
            eyes: Iterable[Eye] = read_container(source)
        elif source.is_dir():
            found = list_eyes(source)
            if not found:
                raise DataError(
                    f"{source}: no eyes found; expected a retina_data tree (<subject>/<OD|OS>/oct_flat_<od|os>.nii.gz)"
                )
            eyes = (read_eye(source, subject, laterality) for subject, laterality in found)
        else:
            raise DataError(f"{source}: not found or not a tree folder or .npz container; expected one of them")
        for eye in eyes:
            yield eye if subsample == 1 else eye.subsample(subsample)


def _store(args: argparse.Namespace) -> int:
    from retina_data.eye_store import EyeStore, local_path, write_store
    from retina_data.files import atomic_path
    from retina_data.folds import FOLDS_FILE
    from retina_data.validation import label_count

    if args.subsample < 1:
        raise DataError(f"--subsample {args.subsample}: expected a factor >= 1")
    for source in args.sources:
        if not source.exists():
            raise DataError(f"{source}: not found; expected a retina_data tree folder or an .npz container")
    trees = [source for source in args.sources if source.is_dir()]
    num_labels = max(label_count(tree) for tree in trees) if trees else None
    location = write_store(
        args.out, _source_eyes(args.sources, args.subsample), overwrite=args.overwrite, num_labels=num_labels
    )
    count = len(EyeStore.open(location))
    local = local_path(location)
    folds = trees[0] / FOLDS_FILE if len(trees) == 1 else None
    if folds is not None and folds.is_file() and local is not None:
        with atomic_path(local / FOLDS_FILE) as tmp:
            shutil.copyfile(folds, tmp)
        print(f"wrote {count} eye(s) to {location}, with the folds file {FOLDS_FILE} of {trees[0]}")
        return 0
    print(f"wrote {count} eye(s) to {location}")
    return 0


def _chosen_eyes(data_dir: Path, eye_id: str | None) -> list[tuple[str, str]]:
    """``(subject, laterality)`` of the eye named ``eye_id`` (every eye when ``None``)."""
    found = list_eyes(data_dir)
    if not found:
        raise DataError(f"{data_dir}: no eyes found")
    if eye_id is None:
        return found
    match = [e for e in found if f"{e[0]}_{e[1]}" == eye_id]
    if not match:
        raise DataError(
            f"{data_dir}: no eye {eye_id!r}; available: " + ", ".join(f"{s}_{lat}" for s, lat in found[:10])
        )
    return match


def _figure(args: argparse.Namespace) -> int:
    from retina_data.figures import plot_phantom_overview

    subject, laterality = _chosen_eyes(args.data_dir, args.eye)[0]
    path = plot_phantom_overview(read_eye(args.data_dir, subject, laterality), args.output, overwrite=args.overwrite)
    print(f"wrote {path or args.output}")
    return 0


def _thickness(args: argparse.Namespace) -> int:
    from retina_data.thickness import write_thickness_outputs

    eyes = [
        read_eye(args.data_dir, subject, laterality) for subject, laterality in _chosen_eyes(args.data_dir, args.eye)
    ]
    labelled = [eye for eye in eyes if eye.labels is not None]
    if not labelled:
        raise DataError(f"{args.data_dir}: no labelled eye; thickness maps need layer labels")
    if args.output.is_dir() and any(args.output.iterdir()) and not args.overwrite:
        raise OutputExistsError(f"{args.output}: already holds files; pass --overwrite to replace them")
    with staged_folder(args.output) as staging:
        for eye in labelled:
            write_thickness_outputs(eye, staging, overwrite=True)
    skipped = len(eyes) - len(labelled)
    print(
        f"wrote thickness maps and ETDRS tables of {len(labelled)} eye(s) to {args.output}"
        + (f"; {skipped} eye(s) without labels skipped" if skipped else "")
    )
    return 0

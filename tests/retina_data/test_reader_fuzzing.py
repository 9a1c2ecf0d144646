"""Every reader, fed damaged copies of a valid file: a clean load or the one-line error, never a traceback.

Each case takes a small valid file of one format, then either truncates it at a seeded
random length or flips a few seeded random bits, and reads it. The reader must either
return (the damage hit bytes it does not check, e.g. image data) or raise a
:class:`RetinaError` whose message is one line naming the file. A hang guard (an alarm far
above a normal read) turns a reader that spins on a corrupt length field into a failure.
"""

from __future__ import annotations

import random
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from heyex_vol import write_vol
from heyex_xml import write_xml_export
from PIL import Image

from retina_data.checkpoints import load_checkpoint, require_keys, save_checkpoint
from retina_data.config import read_yaml
from retina_data.containers import read_container, write_container
from retina_data.errors import DataError, RetinaError
from retina_data.eye import Eye
from retina_data.importers.stacks import read_image_stack
from retina_data.nifti import read_nifti, write_nifti

CASES = 40
"""Damaged copies per format (half truncated, half with flipped bits)."""
HANG_GUARD_S = 30


@contextmanager
def hang_guard(seconds: int = HANG_GUARD_S) -> Iterator[None]:
    def stop(signum, frame):
        raise AssertionError(f"reader still busy after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def damaged(data: bytes, case: int) -> bytes:
    """``case`` even: truncated at a random length; odd: 1-4 random bits flipped."""
    rng = random.Random(case)
    if case % 2 == 0:
        return data[: rng.randrange(len(data))]
    flipped = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
    return bytes(flipped)


def read_cleanly_or_refuse(read: Callable[[], object], name: str) -> None:
    with hang_guard():
        try:
            read()
        except RetinaError as error:
            message = str(error)
            assert "\n" not in message and name in message, message


def _nifti(folder: Path) -> Path:
    path = folder / "oct_flat_od.nii.gz"
    write_nifti(
        path,
        np.random.default_rng(0).random((12, 8, 5), dtype=np.float32),
        (0.004, 0.01, 0.1),
        positions=np.arange(5) * 0.1,
        meta={"subject": "s"},
    )
    return path


def _vol(folder: Path) -> Path:
    display = np.random.default_rng(1).uniform(0.1, 0.9, (3, 16, 8))
    slo = np.arange(20 * 24, dtype=np.uint8).reshape(20, 24)
    return write_vol(
        folder / "scan.vol", display, slo, scale_x=0.01, distance=0.1, scale_z=0.004, slo_scale=(0.02, 0.02)
    )


def _xml(folder: Path) -> Path:
    bscans = np.random.default_rng(2).integers(0, 256, (3, 16, 8), dtype=np.uint8)
    return write_xml_export(
        folder / "export",
        bscans,
        np.zeros((20, 24), np.uint8),
        scale_x=0.01,
        scale_y=0.004,
        distance=0.1,
        slo_scale=(0.02, 0.02),
    )


def _png(folder: Path) -> Path:
    path = folder / "bscan.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (16, 8), dtype=np.uint8)).save(path)
    return path


def _tiff(folder: Path) -> Path:
    path = folder / "stack.tif"
    tifffile.imwrite(
        path, np.random.default_rng(4).integers(0, 65535, (3, 16, 8), dtype=np.uint16), photometric="minisblack"
    )
    return path


def _npz(folder: Path) -> Path:
    rng = np.random.default_rng(8)
    eyes = [
        Eye(
            oct=rng.random((12, 8, 5), dtype=np.float32),
            spacing=(0.004, 0.01, 0.1),
            labels=rng.integers(0, 13, (12, 8, 5), dtype=np.uint8),
            slo=rng.random((8, 5), dtype=np.float32),
            subject=f"s{i}",
            laterality="OD",
        )
        for i in range(2)
    ]
    return write_container(folder / "oct_train_fold0.npz", eyes)


def _checkpoint(folder: Path) -> Path:
    """A training checkpoint as both trees write them (weights, optimiser state, epoch)."""
    network = torch.nn.Linear(4, 3)
    optimiser = torch.optim.Adam(network.parameters())
    network(torch.ones(2, 4)).sum().backward()
    optimiser.step()
    return save_checkpoint(
        folder / "last.pt", {"network": network.state_dict(), "optimizer": optimiser.state_dict(), "epoch": 3}
    )


def _read_checkpoint(path: Path) -> object:
    state = load_checkpoint(path)
    require_keys(state, ("network", "optimizer", "epoch"), path, "a training checkpoint")
    return state


def _yaml(folder: Path) -> Path:
    source = Path(__file__).resolve().parents[2] / "configs" / "interpolation" / "demo_geninr.yaml"
    return Path(shutil.copy(source, folder / "config.yaml"))


def _import_spectralis(path: Path) -> object:
    pytest.importorskip("eyepy")
    from retina_data.importers.spectralis import import_spectralis

    return import_spectralis(path, subject="p")


def _dicom(folder: Path) -> Path:
    pytest.importorskip("pydicom")
    from dicom_files import write_opt, write_slo

    write_slo(folder / "slo.dcm", "1.2.3.4")
    lines = np.array([[[10.5 + 4 * d, 6.5], [10.5 + 4 * d, 20.5]] for d in range(3)])
    bscans = np.random.default_rng(5).integers(0, 4096, (3, 16, 8), dtype=np.uint16)
    return write_opt(folder / "oct.dcm", bscans, lines, "1.2.3.4")


def _import_dicom(path: Path) -> object:
    from retina_data.importers.dicom_oct import import_dicom_oct

    return import_dicom_oct(path, subject="p")


def _duke(folder: Path) -> Path:
    pytest.importorskip("eyepy")
    import scipy.io

    maps = np.stack([np.full((3, 8), 4.0), np.full((3, 8), 10.0), np.full((3, 8), 13.0)], axis=-1)
    path = folder / "amd.mat"
    scipy.io.savemat(
        path,
        {"images": np.random.default_rng(6).uniform(0, 255, (16, 8, 3)), "layerMaps": maps, "Age": np.array([[70]])},
    )
    return path


def _import_duke(path: Path) -> object:
    from retina_data.importers.duke import import_duke_amd

    return import_duke_amd(path, subject="p", laterality="OD")


def _retouch(folder: Path) -> Path:
    import SimpleITK as sitk

    case = folder / "case"
    case.mkdir()
    sitk.WriteImage(
        sitk.GetImageFromArray(np.random.default_rng(7).integers(0, 255, (3, 16, 8), dtype=np.uint8)),
        str(case / "oct.mhd"),
    )
    return case / "oct.mhd"


def _import_retouch(path: Path) -> object:
    from retina_data.importers.retouch import import_retouch

    return import_retouch(path.parent, subject="p", laterality="OD")


FORMATS: dict[str, tuple[Callable[[Path], Path], Callable[[Path], object]]] = {
    "dicom-opt": (_dicom, _import_dicom),
    "duke-mat": (_duke, _import_duke),
    "retouch-mhd": (_retouch, _import_retouch),
    "checkpoint": (_checkpoint, _read_checkpoint),
    "npz-container": (_npz, read_container),
    "nifti": (_nifti, read_nifti),
    "nifti-sidecar": (_nifti, read_nifti),
    "vol": (_vol, _import_spectralis),
    "xml-export": (_xml, _import_spectralis),
    "png": (_png, read_image_stack),
    "tiff": (_tiff, read_image_stack),
    "yaml-config": (_yaml, read_yaml),
}


@pytest.mark.parametrize("case", range(CASES))
@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_a_damaged_file_loads_or_gives_the_one_line_error(kind: str, case: int, tmp_path: Path) -> None:
    write, read = FORMATS[kind]
    path = write(tmp_path)
    target = path.with_name(path.stem.split(".")[0] + ".json") if kind == "nifti-sidecar" else path
    target.write_bytes(damaged(target.read_bytes(), case))
    read_cleanly_or_refuse(lambda: read(path), target.name if kind != "xml-export" else "scan")


@pytest.mark.parametrize("image_type, name", [("AnalyzeImage", "scan.img"), ("MGHImage", "scan.mgz")])
def test_another_nibabel_format_is_refused_as_not_nifti(image_type: str, name: str, tmp_path: Path) -> None:
    import nibabel as nib

    path = tmp_path / name
    nib.save(getattr(nib, image_type)(np.zeros((3, 4, 5), np.float32), np.eye(4)), path)
    with pytest.raises(DataError, match=rf"{name}: a \w+ file; expected a NIfTI image"):
        read_nifti(path)

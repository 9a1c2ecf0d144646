"""Checkpoint files of both trees: a write that fails (a full disk) names the file in one line and
leaves the checkpoint it would replace as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from retina_data.checkpoints import load_checkpoint, save_checkpoint
from retina_data.commandline import os_error_line


def _torch_save_of_a_full_disk(obj, path, *args, **kwargs) -> None:
    """What ``torch.save`` does when the disk fills up: part of the file written, then its zip
    writer's ``RuntimeError`` (seen writing to ``/dev/full``)."""
    Path(path).write_bytes(b"PK\x03\x04 partial")
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


def test_a_failed_checkpoint_write_names_the_file_and_keeps_the_one_it_would_replace(tmp_path, monkeypatch):
    last = save_checkpoint(tmp_path / "last.pt", {"epoch": 3, "weights": torch.arange(4.0)}, keep_previous=True)
    before = last.read_bytes()
    monkeypatch.setattr(torch, "save", _torch_save_of_a_full_disk)

    with pytest.raises(OSError) as error:
        save_checkpoint(last, {"epoch": 4, "weights": torch.zeros(4)}, keep_previous=True)

    line = os_error_line(error.value)
    assert line.startswith(f"{last}: writing the checkpoint failed (") and "disk full?" in line and "\n" not in line
    assert last.read_bytes() == before and load_checkpoint(last)["epoch"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file, no rotation


def test_a_checkpoint_write_rotates_the_one_it_replaces(tmp_path):
    last = save_checkpoint(tmp_path / "last.pt", {"epoch": 1}, keep_previous=True)
    save_checkpoint(last, {"epoch": 2}, keep_previous=True)
    assert load_checkpoint(last)["epoch"] == 2 and load_checkpoint(tmp_path / "last.prev.pt")["epoch"] == 1

"""Native bf16: GPUs of compute capability 8.0 on (and ROCm) have it; the CPU and older GPUs do not."""

from __future__ import annotations

import pytest
import torch

from retina_data.precision import native_bf16


@pytest.mark.parametrize(
    ("capability", "hip", "expected"),
    [
        ((7, 0), None, False),  # V100
        ((7, 5), None, False),  # T4
        ((8, 0), None, True),  # A100
        ((9, 0), None, True),  # H100
        ((0, 0), "6.2", True),  # any ROCm GPU
    ],
)
def test_native_bf16_follows_the_compute_capability(monkeypatch, capability, hip, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.version, "hip", hip)
    assert native_bf16("cuda:0") is expected
    assert native_bf16(torch.device("cuda", 1)) is expected


def test_the_cpu_and_a_missing_gpu_have_no_native_bf16(monkeypatch) -> None:
    assert native_bf16("cpu") is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert native_bf16("cuda") is False

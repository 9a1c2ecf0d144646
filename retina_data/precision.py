"""Whether a GPU computes in bf16 natively: the mixed-precision choice of both script trees.

bf16 keeps fp32's exponent range, so training in it needs no loss scaling. NVIDIA GPUs from
compute capability 8.0 (Ampere) on and AMD GPUs under ROCm compute it natively; older GPUs
emulate it slowly, and a CPU without AMX/AVX-512 BF16 multiplies bf16 matrices several times
slower than fp32 ones. Everywhere else the runs stay in fp32. torch is imported on use only.
"""

from __future__ import annotations

from typing import Any


def native_bf16(device: Any = "cuda") -> bool:
    """Whether ``device`` (a ``torch.device`` or its name) is a GPU with native bf16 arithmetic."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8

"""The continuous atlas: one SIREN over normalised (x, y, z) with an intensity and a label head."""

from __future__ import annotations

import torch
from torch import nn

from atlas_registration.architectures.siren import Siren


class AtlasINR(nn.Module):
    """``coords [..., 3]`` -> intensity ``[...]`` and label logits ``[..., num_classes]``.

    The reference's atlas is ``AtlasINR(256, 3, 10, 30)``: three sine layers, a linear layer,
    ``sigmoid(Linear(256, 1))`` and ``softmax(Linear(256, 10))``. The label head returns the
    logits; the softmax belongs to the loss (``losses.py``) and argmax is unchanged by it.

    Args:
        hidden: width of the SIREN trunk.
        num_layers: sine layers of the trunk.
        num_classes: atlas label classes (10 with the paper's mapping).
        omega: SIREN frequency.
        in_dim: coordinate dimensions (3).
        linear_last: the trunk ends in a linear ``hidden -> hidden`` layer (the reference).
        intensity_sigmoid: the intensity is ``sigmoid`` of its head (the reference), else linear.
    """

    def __init__(
        self,
        hidden: int,
        num_layers: int,
        num_classes: int,
        omega: float,
        in_dim: int = 3,
        linear_last: bool = True,
        intensity_sigmoid: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.intensity_sigmoid = intensity_sigmoid
        self.trunk = Siren(in_dim, hidden, num_layers, 0, omega, linear_last=linear_last)
        self.intensity_head = nn.Linear(hidden, 1)
        self.label_head = nn.Linear(hidden, num_classes)

    def forward(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(intensity [...], logits [..., num_classes])`` at ``coords [..., 3]`` (read in fp32)."""
        features = self.trunk(coords)
        intensity = self.intensity_head(features).squeeze(-1)
        return torch.sigmoid(intensity) if self.intensity_sigmoid else intensity, self.label_head(features)

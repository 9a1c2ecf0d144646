"""The continuous atlas: one SIREN over normalised (x, y, z) with an intensity and a label head."""

from __future__ import annotations

import torch
from torch import nn

from atlas_registration.architectures.siren import Siren


class AtlasINR(nn.Module):
    """``coords [..., 3]`` -> intensity ``[...]`` and label logits ``[..., num_classes]``.

    Args:
        hidden: width of the SIREN trunk.
        num_layers: sine layers of the trunk.
        num_classes: atlas label classes (10 with the paper's mapping).
        omega: SIREN frequency.
        in_dim: coordinate dimensions (3).
    """

    def __init__(self, hidden: int, num_layers: int, num_classes: int, omega: float, in_dim: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.trunk = Siren(in_dim, hidden, num_layers, 0, omega)
        self.intensity_head = nn.Linear(hidden, 1)
        self.label_head = nn.Linear(hidden, num_classes)

    def forward(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(intensity [...], logits [..., num_classes])`` at ``coords [..., 3]``."""
        features = self.trunk(coords)
        return self.intensity_head(features).squeeze(-1), self.label_head(features)

"""Output heads: intensity (sigmoid) and layer segmentation (softmax over classes)."""

from __future__ import annotations

from torch import Tensor, nn

from anisotropic_interpolation.model.activations import Activation


class OutputHeads(nn.Module):
    """One linear map to ``1 + num_classes`` outputs, split into the two heads.

    ``forward(features [N, hidden]) -> (intensity_logit [N], class_logits [N, C] | None)``;
    the intensity is ``sigmoid(intensity_logit)`` and the class probabilities
    ``softmax(class_logits)``. ``num_classes = 0`` drops the segmentation head.

    With ``init_like = None`` the map keeps PyTorch's default initialisation, whose bounds
    depend on the input size only, so it is the reference's ``Linear(hidden, 1)`` and
    ``Linear(hidden, classes)`` side by side; otherwise ``init_like`` initialises it as one of
    its later layers (``MODEL.INIT: ours``).
    """

    def __init__(self, hidden_size: int, num_classes: int, init_like: Activation | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.linear = nn.Linear(hidden_size, 1 + num_classes)
        if init_like is not None:
            init_like.init_layer(self.linear, first=False)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.linear(features)
        return out[:, 0], (out[:, 1:] if self.num_classes else None)

"""Coordinate MLPs conditioned on a per-eye latent code.

One class covers the four backbones of the paper's configs:

- plain MLP (``residual=False``) or residual MLP (``residual=True``: ``h += act(W h + ...)``
  on every hidden layer after the first),
- with the network input re-injected into every layer (``inject_input=True``) or only
  into the first.

The network input is ``[encoded coords, SLO value (optional), latent code]``. The latent
part of every layer that receives the input is applied once per *eye*, not per point:
the weight of such a layer is split into a coordinate part and a latent part, the latent
part is multiplied with the ``[E, L]`` codes once per call, and each point gathers its
eye's row. This is exactly the same function as tiling the code onto every point and
concatenating (the reference's formulation), at a fraction of the cost.

With ``modulation=True`` (FiLM-modulated SIREN, plain MLP only) the code is not an input;
a linear map turns it into a per-layer scale and shift: ``h = sin(ω0 (γ (W h + b) + β))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from anisotropic_interpolation.model.activations import Activation
from anisotropic_interpolation.model.encodings import Encoding


@dataclass(frozen=True)
class BackboneShape:
    """Sizes of a coordinate MLP.

    Attributes:
        extra_features: per-point inputs appended after the encoding (1 for the SLO value).
        latent_size: per-eye code size (0: no code, a single-subject network).
        hidden_size: width of every hidden layer.
        num_layers: number of hidden layers.
        residual: residual connections between hidden layers (``SKIP_CONNECTION``).
        inject_input: input re-injected into every layer (``INPUT_COORD_TO_ALL_LAYERS``).
        modulation: FiLM modulation of every layer by the code instead of code-as-input.
        dropout: dropout probability after every hidden activation.
    """

    extra_features: int
    latent_size: int
    hidden_size: int
    num_layers: int
    residual: bool
    inject_input: bool
    modulation: bool = False
    dropout: float = 0.0


class CoordinateMLP(nn.Module):
    """``forward(coords [N, 3], extra [N, X] | None, codes [E, L] | None, eye [N]) -> [N, hidden]``."""

    def __init__(self, encoding: Encoding, activation: Activation, shape: BackboneShape) -> None:
        super().__init__()
        if shape.modulation and (shape.residual or shape.latent_size == 0):
            raise ValueError("FiLM modulation needs a plain MLP and a latent code")
        self.encoding = encoding
        self.activation = activation
        self.shape = shape
        hidden, layers = shape.hidden_size, shape.num_layers
        point_inputs = encoding.out_dim + shape.extra_features
        self.input_layers = layers if shape.inject_input else 1
        self.input_projection = nn.Linear(point_inputs, hidden * self.input_layers)
        latent_in_input = shape.latent_size if not shape.modulation else 0
        self.latent_projection = (nn.Linear(latent_in_input, hidden * self.input_layers, bias=False)
                                  if latent_in_input else None)
        self.film = nn.Linear(shape.latent_size, 2 * hidden * layers) if shape.modulation else None
        self.hidden_layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.dropout = nn.Dropout(shape.dropout) if shape.dropout > 0 else nn.Identity()
        self._initialise()

    def _initialise(self) -> None:
        hidden = self.shape.hidden_size
        for part in range(self.input_layers):
            block = nn.Linear(self.input_projection.in_features + (
                self.latent_projection.in_features if self.latent_projection is not None else 0), hidden)
            self.activation.init_layer(block, first=part == 0)
            with torch.no_grad():
                rows = slice(part * hidden, (part + 1) * hidden)
                split = self.input_projection.in_features
                self.input_projection.weight[rows] = block.weight[:, :split]
                self.input_projection.bias[rows] = block.bias if part == 0 else 0.0
                if self.latent_projection is not None:
                    self.latent_projection.weight[rows] = block.weight[:, split:]
        for layer in self.hidden_layers:
            self.activation.init_layer(layer, first=False)
        if self.film is not None:
            with torch.no_grad():
                self.film.weight.mul_(0.1)
                self.film.bias.zero_()
                self.film.bias[: hidden * self.shape.num_layers] = 1.0

    @property
    def out_dim(self) -> int:
        return self.shape.hidden_size

    def forward(self, coords: Tensor, extra: Tensor | None, codes: Tensor | None,
                eye: Tensor | None) -> Tensor:
        """Hidden features of each point.

        Args:
            coords: ``[N, 3]`` normalised coordinates.
            extra: ``[N, X]`` per-point extra inputs (SLO value) or ``None``.
            codes: ``[E, L]`` latent codes of the eyes in the batch, or ``None``.
            eye: ``[N]`` index into ``codes`` of each point's eye.

        Returns:
            ``[N, hidden]`` features after the last hidden layer.
        """
        point = self.encoding(coords)
        if extra is not None:
            point = torch.cat([point, extra.to(point.dtype)], dim=-1)
        injected = self.input_projection(point)  # [N, hidden * input_layers]
        if self.latent_projection is not None:  # once per eye, gathered per point
            injected = injected + self.latent_projection(codes).index_select(0, eye)
        hidden = self.shape.hidden_size
        per_layer = injected.split(hidden, dim=-1)  # one split: a single gradient concat, not one per slice
        scales = shifts = None
        if self.film is not None:
            film = self.film(codes).index_select(0, eye)  # [N, 2 * hidden * layers]
            scales, shifts = (part.split(hidden, dim=-1) for part in film.split(hidden * self.shape.num_layers, -1))
        h = self._activate(per_layer[0], scales, shifts, 0)
        for index, layer in enumerate(self.hidden_layers, start=1):
            pre = layer(h)
            if self.input_layers > 1:
                pre = pre + per_layer[index]
            out = self._activate(pre, scales, shifts, index)
            h = h + out if self.shape.residual else out
        return h

    def _activate(self, pre: Tensor, scales: tuple[Tensor, ...] | None, shifts: tuple[Tensor, ...] | None,
                  index: int) -> Tensor:
        if scales is not None:
            pre = scales[index] * pre + shifts[index]
        return self.dropout(self.activation(pre))

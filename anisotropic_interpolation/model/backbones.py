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
    """``forward(coords [N, 3], extra [N, X] | None, codes [E, L] | None, eye [N]) -> [N, hidden]``.

    ``layers[0]`` maps the point inputs (encoded coordinates and SLO value) to the first
    hidden layer; ``layers[i]`` maps ``[h, point inputs]`` (with ``inject_input``) or ``h``.
    ``latent_projection`` holds the latent-code columns of every layer that receives the
    network input, stacked: ``[hidden * input_layers, L]``.
    """

    def __init__(self, encoding: Encoding, activation: Activation, shape: BackboneShape) -> None:
        super().__init__()
        if shape.modulation and (shape.residual or shape.latent_size == 0):
            raise ValueError("FiLM modulation needs a plain MLP and a latent code")
        self.encoding = encoding
        self.activation = activation
        self.shape = shape
        hidden, layers = shape.hidden_size, shape.num_layers
        self.point_inputs = encoding.out_dim + shape.extra_features
        self.input_layers = layers if shape.inject_input else 1
        self.layers = nn.ModuleList(
            nn.Linear(self.point_inputs if index == 0 else
                      hidden + (self.point_inputs if index < self.input_layers else 0), hidden)
            for index in range(layers))
        latent_in_input = shape.latent_size if not shape.modulation else 0
        self.latent_projection = (nn.Linear(latent_in_input, hidden * self.input_layers, bias=False)
                                  if latent_in_input else None)
        self.film = nn.Linear(shape.latent_size, 2 * hidden * layers) if shape.modulation else None
        self.dropout = nn.Dropout(shape.dropout) if shape.dropout > 0 else nn.Identity()
        self._initialise()

    def _initialise(self) -> None:
        """Each layer is initialised as one linear map over everything it sees (hidden state,
        point inputs and the tiled code, as in the reference), then split into its parts."""
        hidden = self.shape.hidden_size
        latent = self.latent_projection.in_features if self.latent_projection is not None else 0
        for index, layer in enumerate(self.layers):
            receives_code = index < self.input_layers
            whole = nn.Linear(layer.in_features + (latent if receives_code else 0), hidden)
            self.activation.init_layer(whole, first=index == 0)
            with torch.no_grad():
                layer.weight.copy_(whole.weight[:, :layer.in_features])
                layer.bias.copy_(whole.bias)
                if receives_code and self.latent_projection is not None:
                    rows = slice(index * hidden, (index + 1) * hidden)
                    self.latent_projection.weight[rows] = whole.weight[:, layer.in_features:]
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
            eye: ``[N]`` index of each point's eye into ``codes``.

        Returns:
            ``[N, hidden]`` features after the last hidden layer.

        Every pre-activation is one matrix product with the bias (plus, where the code is an
        input, the eye's projected code gathered per point) added by the product itself; no
        ``[N, hidden x layers]`` tensor is made.
        """
        point = self.encoding(coords)
        if extra is not None:
            point = torch.cat([point, extra.to(point.dtype)], dim=-1)
        hidden = self.shape.hidden_size
        code_terms: tuple[Tensor, ...] = ()
        if self.latent_projection is not None:  # once per eye: [E, hidden] per layer, bias included
            per_eye = self.latent_projection(codes).split(hidden, dim=-1)
            code_terms = tuple(term + layer.bias for term, layer in zip(per_eye, self.layers))
        film = None
        if self.film is not None:
            film = self.film(codes).split(hidden, dim=-1)  # scales, then shifts, per layer: [E, hidden]
        h = point
        for index, layer in enumerate(self.layers):
            inputs = h if index == 0 or index >= self.input_layers else torch.cat([h, point], dim=-1)
            if index < len(code_terms):
                pre = torch.addmm(code_terms[index].index_select(0, eye).to(inputs.dtype), inputs, layer.weight.t())
            else:
                pre = layer(inputs)
            if film is not None:
                layers = self.shape.num_layers
                pre = torch.addcmul(film[layers + index].index_select(0, eye), film[index].index_select(0, eye), pre)
            out = self.dropout(self.activation(pre))
            h = h + out if self.shape.residual and index > 0 else out
        return h

"""Coordinate MLPs conditioned on a per-eye latent code.

One class covers the four backbones of the paper's configs:

- plain MLP (``residual=False``) or residual MLP (``residual=True``: ``h = act(W ... + b) + h``
  on every layer after the first),
- with the point inputs (encoded coordinates, SLO value) re-injected into every layer
  (``inject_input=True``) or only into the first.

The first layer gets ``[encoded coords, SLO value (optional), latent code]``. With
``inject_input`` each later layer gets ``[h, encoded coords, SLO value]``: the code enters the
first layer only, as in the reference, unless ``latent_to_all_layers`` (ours) appends it there
too. (The reference orders a later layer's input ``[coords, SLO, h]``; the columns of a layer
are initialised alike, so the order does not change the method.)

The latent part of every layer that receives the code is applied once per *eye*, not per
point: the weight of such a layer is split into a point part and a latent part, the latent
part is multiplied with the ``[E, L]`` codes once per call, and each point gathers its eye's
row. This is exactly the same function as tiling the code onto every point and concatenating
(the reference's formulation), at a fraction of the cost. An activation combining several
linear maps (WIRE's ``W_f`` and ``W_s``) has them stacked in one ``nn.Linear`` of
``linear_maps x hidden`` outputs, so one matrix product computes both.

With ``modulation=True`` (FiLM-modulated SIREN, plain MLP only) the code is not an input; a
linear map turns it into a per-layer scale ``gamma`` and shift ``beta``:

- ``film="reference"``: the first layer ``sin(ω0 (W x + b))`` is not modulated, every later layer
  is ``sin(ω0 gamma (W h + b) + beta)`` (the shift outside ω0); every weight
  ``U(-sqrt(6/max(in, out))/ω0, +...)`` (first layer ``U(-1/in, 1/in)``), zero biases. (The
  reference's loop also skips the last hidden layer, evidently a bug: here all layers are used.)
- ``film="ours"``: every layer ``sin(ω0 (gamma (W h + b) + beta))``, SIREN-initialised layers,
  ``gamma = 1`` and ``beta = 0`` at a zero code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from anisotropic_interpolation.model.activations import Activation, Sine
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
        inject_input: point inputs re-injected into every layer (``INPUT_COORD_TO_ALL_LAYERS``).
        latent_to_all_layers: with ``inject_input``, the code too (``LATENT_TO_ALL_LAYERS``).
        modulation: FiLM modulation of the layers by the code instead of code-as-input.
        film: the FiLM form, ``reference`` or ``ours`` (``MODEL.FILM``).
        dropout: dropout probability after every hidden activation.
    """

    extra_features: int
    latent_size: int
    hidden_size: int
    num_layers: int
    residual: bool
    inject_input: bool
    latent_to_all_layers: bool = False
    modulation: bool = False
    film: Literal["reference", "ours"] = "reference"
    dropout: float = 0.0


class CoordinateMLP(nn.Module):
    """``forward(coords [N, 3], extra [N, X] | None, codes [E, L] | None, eye [N]) -> [N, hidden]``.

    ``layers[0]`` maps the point inputs (encoded coordinates and SLO value) to the first
    hidden layer; ``layers[i]`` maps ``[h, point inputs]`` (with ``inject_input``) or ``h``; each
    has ``activation.linear_maps x hidden`` outputs. ``latent_projection`` holds the latent-code
    columns of the ``code_layers`` layers that receive the code, stacked:
    ``[linear_maps * hidden * code_layers, L]``. ``film`` maps a code to the scales, then the
    shifts, of the modulated layers: ``[2 * hidden * modulated layers, L]``.
    """

    def __init__(self, encoding: Encoding, activation: Activation, shape: BackboneShape) -> None:
        super().__init__()
        if shape.modulation and (shape.residual or shape.latent_size == 0 or type(activation) is not Sine):
            raise ValueError("FiLM modulation needs a plain SIREN MLP and a latent code")
        if shape.latent_to_all_layers and (shape.modulation or not shape.inject_input):
            raise ValueError("the code enters every layer only where the input does (inject_input, no modulation)")
        self.encoding = encoding
        self.activation = activation
        self.shape = shape
        hidden, layers = shape.hidden_size, shape.num_layers
        width = activation.linear_maps * hidden
        self.width = width
        """Outputs of every layer: ``activation.linear_maps x hidden``."""
        self.omega_0 = activation.omega_0 if isinstance(activation, Sine) else 1.0
        """The sine's ω0 (the reference FiLM's initialisation and shift scale; FiLM needs a sine)."""
        self.point_inputs = encoding.out_dim + shape.extra_features
        self.input_layers = layers if shape.inject_input else 1
        code_as_input = shape.latent_size > 0 and not shape.modulation
        self.code_layers = (self.input_layers if shape.latent_to_all_layers else 1) if code_as_input else 0
        self.layers = nn.ModuleList(
            nn.Linear(
                self.point_inputs if index == 0 else hidden + (self.point_inputs if index < self.input_layers else 0),
                width,
            )
            for index in range(layers)
        )
        self.latent_projection = (
            nn.Linear(shape.latent_size, width * self.code_layers, bias=False) if self.code_layers else None
        )
        self.first_modulated = 0 if shape.film == "ours" else 1
        self.modulated_layers = max(0, layers - self.first_modulated) if shape.modulation else 0
        self.film = nn.Linear(shape.latent_size, 2 * hidden * self.modulated_layers) if self.modulated_layers else None
        self.dropout = nn.Dropout(shape.dropout) if shape.dropout > 0 else nn.Identity()
        if shape.modulation and shape.film == "reference":
            self._initialise_reference_film()
        else:
            self._initialise()

    def _initialise(self) -> None:
        """Each layer is initialised as one linear map over everything it sees (hidden state,
        point inputs and, where it gets it, the tiled code, as in the reference), then split
        into its parts."""
        width = self.width
        projection = self.latent_projection
        latent = self.shape.latent_size if projection is not None else 0
        for index, layer in enumerate(self.layers):
            assert isinstance(layer, nn.Linear)
            receives_code = index < self.code_layers
            whole = nn.Linear(layer.in_features + (latent if receives_code else 0), width)
            self.activation.init_layer(whole, first=index == 0)
            with torch.no_grad():
                layer.weight.copy_(whole.weight[:, : layer.in_features])
                layer.bias.copy_(whole.bias)
                if receives_code and projection is not None:
                    rows = slice(index * width, (index + 1) * width)
                    projection.weight[rows] = whole.weight[:, layer.in_features :]
        if self.film is not None:
            with torch.no_grad():
                self.film.weight.mul_(0.1)
                self.film.bias.zero_()
                self.film.bias[: self.shape.hidden_size * self.modulated_layers] = 1.0

    def _initialise_reference_film(self) -> None:
        """The reference FiLM SIREN's rule: ``U(+-sqrt(6 / max(in, out)) / ω0)`` for every weight
        (``U(+-1/in)`` for the first layer's), zero biases. The FiLM map stands for one
        ``Linear(L, 2 hidden)`` per modulated layer, so its ``out`` is ``2 hidden``."""
        omega_0 = self.omega_0
        with torch.no_grad():
            for index, layer in enumerate(self.layers):
                assert isinstance(layer, nn.Linear)
                fan_out, fan_in = layer.weight.shape
                bound = 1.0 / fan_in if index == 0 else math.sqrt(6.0 / max(fan_in, fan_out)) / omega_0
                layer.weight.uniform_(-bound, bound)
                layer.bias.zero_()
            if self.film is not None:
                bound = math.sqrt(6.0 / max(self.shape.latent_size, 2 * self.shape.hidden_size)) / omega_0
                self.film.weight.uniform_(-bound, bound)
                self.film.bias.zero_()

    @property
    def out_dim(self) -> int:
        return self.shape.hidden_size

    def forward(self, coords: Tensor, extra: Tensor | None, codes: Tensor | None, eye: Tensor | None) -> Tensor:
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
        if (self.latent_projection is not None or self.film is not None) and (codes is None or eye is None):
            raise ValueError("a latent-conditioned network needs the codes [E, L] and each point's eye [N]")
        code_terms: tuple[Tensor, ...] = ()
        if self.latent_projection is not None:  # once per eye: [E, width] per layer, bias included
            per_eye = self.latent_projection(codes).split(self.width, dim=-1)
            code_terms = tuple(term + layer.bias for term, layer in zip(per_eye, self.layers))
        film = None
        if self.film is not None:  # scales, then shifts, per modulated layer: [E, hidden]
            film = self.film(codes).split(self.shape.hidden_size, dim=-1)
        h = point
        for index, layer in enumerate(self.layers):
            assert isinstance(layer, nn.Linear)
            inputs = h if index == 0 or index >= self.input_layers else torch.cat([h, point], dim=-1)
            if index < len(code_terms):
                assert eye is not None  # code terms are made only with codes and eyes (checked above)
                pre = torch.addmm(code_terms[index].index_select(0, eye).to(inputs.dtype), inputs, layer.weight.t())
            else:
                pre = layer(inputs)
            if film is not None and index >= self.first_modulated:
                assert eye is not None  # FiLM terms are made only with codes and eyes (checked above)
                pre = self._modulate(pre, film, index - self.first_modulated, eye)
            out = self.dropout(self.activation(pre))
            h = h + out if self.shape.residual and index > 0 else out
        return h

    def _modulate(self, pre: Tensor, film: tuple[Tensor, ...], layer: int, eye: Tensor) -> Tensor:
        """``gamma pre + beta`` of the eye of each point (ours), or ``gamma pre + beta / ω0``, so
        that the sine gives ``sin(ω0 gamma pre + beta)`` (the reference)."""
        scale = film[layer].index_select(0, eye)
        shift = film[self.modulated_layers + layer].index_select(0, eye)
        if self.shape.film == "reference":
            shift = shift / self.omega_0
        return torch.addcmul(shift, scale, pre)

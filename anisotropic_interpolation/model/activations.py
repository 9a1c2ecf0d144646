"""Periodic and piecewise-linear activations with the weight initialisation each one needs.

- ``SIREN`` (Sitzmann et al. 2020): ``sin(ω0 x)``; first layer ``U(-1/in, 1/in)``, later
  layers ``U(-sqrt(6/in)/ω0, sqrt(6/in)/ω0)``.
- ``WIRE`` (Saragadam et al. 2023, real Gabor wavelet): ``cos(ω0 f) exp(-(s0 s)²)`` of two
  linear maps of the layer input, ``f = W_f x + b_f`` and ``s = W_s x + b_s`` (the reference), or
  of one (``shared_linear``: ``s = f``, ours); both matrices get the SIREN initialisation.
- ``FINER`` (Liu et al. 2024): ``sin(ω0 (|x| + 1) x)``, the scale ``|x| + 1`` detached unless
  ``scale_requires_grad``; SIREN weights, first-layer bias ``U(-k, k)`` with ``k = scale_0``.
- ``RELU``: PyTorch's default ``nn.Linear`` initialisation (the reference), or Kaiming-uniform
  weights with zero biases (``kaiming``, ours).

SIREN biases keep PyTorch's default ``U(-1/sqrt(in), 1/sqrt(in))``. An activation that combines
several linear maps (``linear_maps``, WIRE's two) takes their outputs side by side, ``[N, k width]``,
so one matrix product computes all of them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

ActivationName = Literal["SIREN", "WIRE", "FINER", "RELU"]
ACTIVATIONS: tuple[str, ...] = ("SIREN", "WIRE", "FINER", "RELU")


class Activation(nn.Module):
    """An element-wise nonlinearity that also knows how to initialise the layer feeding it.

    ``forward(pre [N, linear_maps * width]) -> [N, width]``.
    """

    linear_maps: int = 1
    """Linear maps of the layer input the activation combines."""

    def init_layer(self, layer: nn.Linear, first: bool) -> None:
        raise NotImplementedError


class Sine(Activation):
    """SIREN: ``sin(ω0 x)``."""

    def __init__(self, omega_0: float = 30.0) -> None:
        super().__init__()
        self.omega_0 = omega_0

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega_0 * x)

    def init_layer(self, layer: nn.Linear, first: bool) -> None:
        fan_in = layer.weight.shape[1]
        bound = 1.0 / fan_in if first else math.sqrt(6.0 / fan_in) / self.omega_0
        with torch.no_grad():
            layer.weight.uniform_(-bound, bound)
            if layer.bias is not None:
                layer.bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))


class _GaborWavelet(torch.autograd.Function):
    """``y = cos(ω0 f) exp(-(s0 s)²)`` and its derivative in few, mostly in-place passes.

    ``x`` is ``[N, 2 width]`` = ``[f, s]`` (two linear maps) or ``[N, width]`` with ``s = f``.
    The derivatives ``dy/df = -ω0 sin(ω0 f) exp(-(s0 s)²)`` and ``dy/ds = -2 s0² s y`` reuse the
    saved envelope and output, so the backward pass evaluates one transcendental function (the
    sine), not two; autograd of the composed expression would keep and combine six intermediates.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, omega_0: float, scale_0: float, separate: bool) -> Tensor:
        frequency, scale = x.chunk(2, dim=-1) if separate else (x, x)
        envelope = torch.exp_(scale.square().mul_(-scale_0 * scale_0))
        output = torch.cos_(frequency * omega_0).mul_(envelope)
        ctx.save_for_backward(x, envelope, output)
        ctx.omega_0, ctx.scale_0, ctx.separate = omega_0, scale_0, separate
        return output

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        x, envelope, output = ctx.saved_tensors
        frequency, scale = x.chunk(2, dim=-1) if ctx.separate else (x, x)
        slope = torch.sin_(frequency * ctx.omega_0).mul_(envelope).mul_(-ctx.omega_0)
        if not ctx.separate:
            slope.addcmul_(scale, output, value=-2.0 * ctx.scale_0 * ctx.scale_0)
            return slope.mul_(grad), None, None, None
        scale_slope = torch.mul(scale, output).mul_(-2.0 * ctx.scale_0 * ctx.scale_0)
        return torch.cat([slope.mul_(grad), scale_slope.mul_(grad)], dim=-1), None, None, None


class Gabor(Sine):
    """WIRE, real form: ``cos(ω0 f) exp(-(s0 s)²)``, ``s = f`` with ``shared_linear``."""

    def __init__(self, omega_0: float = 30.0, scale_0: float = 10.0, shared_linear: bool = False) -> None:
        super().__init__(omega_0)
        self.scale_0 = scale_0
        self.linear_maps = 1 if shared_linear else 2

    def forward(self, x: Tensor) -> Tensor:
        return _GaborWavelet.apply(x, self.omega_0, self.scale_0, self.linear_maps == 2)


class Finer(Sine):
    """FINER: ``sin(ω0 (|x| + 1) x)``; the variable-periodic scale is detached by default."""

    def __init__(self, omega_0: float = 30.0, scale_0: float = 10.0, scale_requires_grad: bool = False) -> None:
        super().__init__(omega_0)
        self.scale_0 = scale_0
        self.scale_requires_grad = scale_requires_grad

    def forward(self, x: Tensor) -> Tensor:
        scale = x.abs() + 1.0
        if not self.scale_requires_grad:
            scale = scale.detach()
        return torch.sin(self.omega_0 * scale * x)

    def init_layer(self, layer: nn.Linear, first: bool) -> None:
        super().init_layer(layer, first)
        if first and layer.bias is not None:
            with torch.no_grad():
                layer.bias.uniform_(-self.scale_0, self.scale_0)


class Relu(Activation):
    """ReLU; layers keep PyTorch's default initialisation, or Kaiming-uniform with ``kaiming``."""

    def __init__(self, kaiming: bool = False) -> None:
        super().__init__()
        self.kaiming = kaiming

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x)

    def init_layer(self, layer: nn.Linear, first: bool) -> None:
        if not self.kaiming:
            layer.reset_parameters()
            return
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def make_activation(
    name: str,
    *,
    omega_0: float = 30.0,
    scale_0: float = 10.0,
    scale_requires_grad: bool = False,
    shared_linear: bool = False,
    kaiming: bool = False,
) -> Activation:
    """The activation called ``name`` (one of :data:`ACTIVATIONS`); ``shared_linear`` applies to
    WIRE, ``kaiming`` to RELU."""
    if name == "SIREN":
        return Sine(omega_0)
    if name == "WIRE":
        return Gabor(omega_0, scale_0, shared_linear)
    if name == "FINER":
        return Finer(omega_0, scale_0, scale_requires_grad)
    if name == "RELU":
        return Relu(kaiming)
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")

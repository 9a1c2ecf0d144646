"""SIREN (sine-activated MLP) and its FiLM-modulated variant.

Initialisation follows Sitzmann et al. (2020): the first layer's weights are uniform in
``[-1/in, 1/in]``, later layers' in ``[-sqrt(6/in)/omega, sqrt(6/in)/omega]``, so the
pre-activations stay well distributed through depth for any ``omega``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SineLayer(nn.Module):
    """``sin(omega * (W x + b))`` with SIREN initialisation.

    Args:
        in_dim: input features.
        out_dim: output features.
        omega: frequency factor (30 in the paper).
        first: the first layer of a network (wider initial range).
    """

    def __init__(self, in_dim: int, out_dim: int, omega: float, first: bool = False) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.omega = in_dim, out_dim, float(omega)
        self.linear = nn.Linear(in_dim, out_dim)
        bound = 1.0 / in_dim if first else math.sqrt(6.0 / in_dim) / self.omega
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None,
                shift: torch.Tensor | None = None) -> torch.Tensor:
        """``x [..., in]`` -> ``[..., out]``; FiLM ``scale``/``shift`` broadcast against the output."""
        h = self.linear(x)
        if scale is not None:
            h = h * scale
        if shift is not None:
            h = h + shift
        return torch.sin(self.omega * h)


def _small_linear(in_dim: int, out_dim: int, scale: float) -> nn.Linear:
    """A linear output layer whose weights start ``scale`` times the default and bias at 0."""
    layer = nn.Linear(in_dim, out_dim)
    with torch.no_grad():
        layer.weight.mul_(scale)
        layer.bias.zero_()
    return layer


class Siren(nn.Module):
    """``num_layers`` sine layers of width ``hidden`` followed by a linear output.

    Args:
        in_dim: input features (3 for coordinates).
        hidden: width of the sine layers.
        num_layers: number of sine layers (>= 1).
        out_dim: output features; 0 returns the last hidden features (for multi-head use).
        omega: SIREN frequency.
        out_scale: initial scale of the output layer's weights (small: near-zero output).
    """

    def __init__(self, in_dim: int, hidden: int, num_layers: int, out_dim: int, omega: float,
                 out_scale: float = 1.0) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim or hidden
        self.layers = nn.ModuleList(
            SineLayer(in_dim if i == 0 else hidden, hidden, omega, first=i == 0) for i in range(num_layers)
        )
        self.head = _small_linear(hidden, out_dim, out_scale) if out_dim else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., in_dim]`` -> ``[..., out_dim]``."""
        for layer in self.layers:
            x = layer(x)
        return x if self.head is None else self.head(x)


class FiLMSiren(nn.Module):
    """A SIREN whose every sine layer is modulated by a latent code (pi-GAN-style FiLM).

    Layer ``i`` computes ``sin(omega * ((W x + b) * (1 + g_i(z)) + b_i(z)))`` where
    ``g_i, b_i`` are linear maps of the latent code ``z``. With ``z = 0`` it is a plain SIREN.

    Args:
        in_dim: input features (3 for coordinates).
        latent_dim: size of the latent code.
        hidden: width of the sine layers.
        num_layers: number of sine layers.
        out_dim: output features (3 for a displacement).
        omega: SIREN frequency.
        out_scale: initial scale of the output weights (small: near-identity deformation).
    """

    def __init__(self, in_dim: int, latent_dim: int, hidden: int, num_layers: int, out_dim: int,
                 omega: float, out_scale: float = 1.0) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.latent_dim = in_dim, out_dim, latent_dim
        self.hidden, self.num_layers = hidden, num_layers
        self.layers = nn.ModuleList(
            SineLayer(in_dim if i == 0 else hidden, hidden, omega, first=i == 0) for i in range(num_layers)
        )
        self.film = nn.Linear(latent_dim, 2 * hidden * num_layers)
        with torch.no_grad():
            self.film.bias.zero_()
        self.head = _small_linear(hidden, out_dim, out_scale)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """``x [B, N, in_dim]`` and ``latent [B, latent_dim]`` -> ``[B, N, out_dim]``."""
        film = self.film(latent).view(latent.shape[0], 1, self.num_layers, 2, self.hidden)
        for i, layer in enumerate(self.layers):
            x = layer(x, scale=1.0 + film[:, :, i, 0], shift=film[:, :, i, 1])
        return self.head(x)

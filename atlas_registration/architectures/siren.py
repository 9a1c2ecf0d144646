"""SIREN (sine-activated MLP) and the two FiLM-modulated SIRENs of the deformation field.

Initialisation follows Sitzmann et al. (2020) unless said otherwise: the first layer's
weights are uniform in ``[-1/in, 1/in]``, later layers' in ``[-sqrt(6/in)/omega, sqrt(6/in)/omega]``.

Coordinates and displacements stay in fp32 under any autocast: the first layer (which reads
coordinates such as ``x + u``) and a deformation network's output layer run with autocast off.
In bf16, ``x + u`` near ``|x| = 0.8`` would be rounded to multiples of ~0.004 (half a voxel of
a 496-row B-scan), and a displacement of a tenth of a voxel would vanish.
"""

from __future__ import annotations

import math
from typing import TypeAlias

import torch
from torch import nn


def full_precision(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` in fp32, autocast or not (for coordinates and displacements)."""
    with torch.autocast(x.device.type, enabled=False):
        return module(x.float())


def uniform_init(layer: nn.Linear, bound: float, zero_bias: bool = False) -> nn.Linear:
    """Weights of ``layer`` U(-bound, bound); with ``zero_bias`` the bias 0 (else PyTorch's default)."""
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)
        if zero_bias:
            layer.bias.zero_()
    return layer


def siren_bound(in_dim: int, omega: float, first: bool) -> float:
    """SIREN's initial weight bound: ``1/in`` for a first layer, else ``sqrt(6/in)/omega``."""
    return 1.0 / in_dim if first else math.sqrt(6.0 / in_dim) / omega


class SineLayer(nn.Module):
    """``sin(omega * (W x + b))`` with SIREN initialisation; a first layer computes in fp32.

    Args:
        in_dim: input features.
        out_dim: output features.
        omega: frequency factor (30 in the paper).
        first: the first layer of a network (wider initial range, fp32 under autocast).
    """

    def __init__(self, in_dim: int, out_dim: int, omega: float, first: bool = False) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.omega, self.first = in_dim, out_dim, float(omega), first
        self.linear = uniform_init(nn.Linear(in_dim, out_dim), siren_bound(in_dim, self.omega, first))

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x [..., in]`` -> ``[..., out]``; FiLM ``scale``/``shift`` broadcast against the output."""
        if self.first:
            with torch.autocast(x.device.type, enabled=False):
                return self._sine(x.float(), scale, shift)
        return self._sine(x, scale, shift)

    def _sine(self, x: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None) -> torch.Tensor:
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
    """``num_layers`` sine layers of width ``hidden``, optionally a linear layer, then an optional output.

    Args:
        in_dim: input features (3 for coordinates).
        hidden: width of the sine layers.
        num_layers: number of sine layers (>= 1).
        out_dim: output features; 0 returns the hidden features (for multi-head use).
        omega: SIREN frequency.
        out_scale: initial scale of the output layer's weights (small: near-zero output).
        linear_last: end the trunk in a linear ``hidden -> hidden`` layer with SIREN
            initialisation (the reference atlas: ``Siren([3, 256, 256, 256, 256])``).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        num_layers: int,
        out_dim: int,
        omega: float,
        out_scale: float = 1.0,
        linear_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim or hidden
        self.layers = nn.ModuleList(
            SineLayer(in_dim if i == 0 else hidden, hidden, omega, first=i == 0) for i in range(num_layers)
        )
        self.last = uniform_init(nn.Linear(hidden, hidden), siren_bound(hidden, omega, False)) if linear_last else None
        self.head = _small_linear(hidden, out_dim, out_scale) if out_dim else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., in_dim]`` -> ``[..., out_dim]``."""
        for layer in self.layers:
            x = layer(x)
        if self.last is not None:
            x = self.last(x)
        return x if self.head is None else self.head(x)


class FiLMSiren(nn.Module):
    """Ours (``DISP_MODEL.FILM: pigan``): every sine layer modulated by the latent code.

    Layer ``i`` computes ``sin(omega * ((W x + b) * (1 + g_i(z)) + b_i(z)))`` where
    ``g_i, b_i`` are linear maps of the latent code ``z``. With ``z = 0`` it is a plain SIREN.
    The linear output (fp32) starts small, so the field starts near the identity.

    Args:
        in_dim: input features (3 for coordinates).
        latent_dim: size of the latent code.
        hidden: width of the sine layers.
        num_layers: number of sine layers.
        out_dim: output features (3 for a displacement).
        omega: SIREN frequency.
        out_scale: initial scale of the output weights (small: near-identity deformation).
    """

    def __init__(
        self,
        in_dim: int,
        latent_dim: int,
        hidden: int,
        num_layers: int,
        out_dim: int,
        omega: float,
        out_scale: float = 1.0,
    ) -> None:
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
        """``x [B, N, in_dim]`` and ``latent [B, latent_dim]`` -> ``[B, N, out_dim]`` (fp32)."""
        film = self.film(latent).view(latent.shape[0], 1, self.num_layers, 2, self.hidden)
        for i, layer in enumerate(self.layers):
            x = layer(x, scale=1.0 + film[:, :, i, 0], shift=film[:, :, i, 1])
        return full_precision(self.head, x)


class ReferenceFiLMSiren(nn.Module):
    """The reference's modulated SIREN (``DISP_MODEL.FILM: reference``).

    ``h_0 = sin(omega (W_0 x + b_0))`` (unmodulated), then for each later layer in use
    ``h_i = sin(omega * gamma_i * (W_i h + b_i) + beta_i)`` with ``[gamma_i, beta_i] = M_i z``
    (the shift outside omega), and the output ``u = sin(omega * (W_o h + b_o))``, so every
    component of ``u`` lies in [-1, 1]. Every weight except the first layer's starts
    U(-init_bound, init_bound) (the first layer's U(-1/in, 1/in)), every bias at 0.

    Args:
        in_dim: input features (3 for coordinates).
        latent_dim: size of the latent code.
        hidden: width of the sine layers.
        num_layers: sine layers (NUM_LAYERS).
        out_dim: output features (3).
        omega: SIREN frequency.
        init_bound: the reference's ``siren_init`` (0.001).
        skip_last: use only the first ``max(num_layers - 1, 1)`` layers, as the reference's loop
            does (it builds the last layer and never calls it; it is not built here).
    """

    def __init__(
        self,
        in_dim: int,
        latent_dim: int,
        hidden: int,
        num_layers: int,
        out_dim: int,
        omega: float,
        init_bound: float = 1e-3,
        skip_last: bool = True,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.latent_dim, self.hidden = in_dim, out_dim, latent_dim, hidden
        self.omega = float(omega)
        used = max(num_layers - 1, 1) if skip_last else num_layers
        self.first = uniform_init(nn.Linear(in_dim, hidden), 1.0 / in_dim, zero_bias=True)
        self.layers = nn.ModuleList(
            uniform_init(nn.Linear(hidden, hidden), init_bound, zero_bias=True) for _ in range(used - 1)
        )
        self.film = nn.ModuleList(
            uniform_init(nn.Linear(latent_dim, 2 * hidden), init_bound, zero_bias=True) for _ in range(used - 1)
        )
        self.head = uniform_init(nn.Linear(hidden, out_dim), init_bound, zero_bias=True)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """``x [B, N, in_dim]`` and ``latent [B, latent_dim]`` -> ``u [B, N, out_dim]`` in [-1, 1] (fp32)."""
        h = torch.sin(self.omega * full_precision(self.first, x))
        for layer, film in zip(self.layers, self.film):
            gamma, beta = film(latent)[:, None].chunk(2, dim=-1)
            h = torch.sin(self.omega * gamma * layer(h) + beta)
        return torch.sin(self.omega * full_precision(self.head, h))


DeformationNetwork: TypeAlias = FiLMSiren | ReferenceFiLMSiren
"""Either deformation network: both map ``(x [B, N, 3], latent [B, L])`` to ``u [B, N, 3]``."""


def deformation_network(disp: dict, latent_size: int) -> DeformationNetwork:
    """The deformation network of ``disp = dict(film, hidden, num_layers, omega, siren_init, skip_last,
    out_scale)`` (the ``DISP_MODEL`` keys) for codes of ``latent_size``."""
    if disp["film"] == "reference":
        return ReferenceFiLMSiren(
            3, latent_size, disp["hidden"], disp["num_layers"], 3, disp["omega"], disp["siren_init"], disp["skip_last"]
        )
    return FiLMSiren(3, latent_size, disp["hidden"], disp["num_layers"], 3, disp["omega"], disp["out_scale"])


def initial_codes(count: int, size: int, std: float, kind: str = "shifted") -> torch.Tensor:
    """Initial latent codes ``[count, size]``: ``shifted`` (the reference) draws the first ``size // 2``
    entries from N(1, std) and the rest from N(0, std); ``centred`` all from N(0, std)."""
    codes = torch.randn(count, size) * std
    if kind == "shifted":
        codes[:, : size // 2] += 1.0
    return codes

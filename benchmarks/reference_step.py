"""A faithful re-creation of the reference implementation's training step (paper config).

Written from the facts in ``shared/REFERENCE.md`` (not from the reference's code), on purpose
independent of our own network and loss code, so that it can serve both as the baseline of
the throughput benchmark and as an independent check that our paper mode computes the same
function and loss (``tests/interpolation/test_reference_equivalence.py``):

- residual MLP of ``layers`` WIRE layers of width ``hidden``; the first layer sees
  ``[x, y, z, SLO, code]``, every later layer ``[x, y, z, SLO, h]`` (the latent code enters
  the first layer only) and adds its output to ``h``;
- WIRE with two linear maps of the same input: ``cos(ω0 f) exp(-(s0 s)²)``, ``f = W_f x + b_f``,
  ``s = W_s x + b_s``;
- heads ``Linear(hidden, 1)`` + sigmoid and ``Linear(hidden, classes)`` + softmax;
- coordinates ``linspace(-1, 1)`` over depth and A-scans, ``linspace(-1, 1, D) / 10`` over the
  B-scans;
- one whole B-scan of one eye per step, the eye's code tiled onto every pixel;
- loss ``5 (MSE + 0.1 (1 - SSIM)) + BCE(softmax, one-hot) + mean(code²)`` with SSIM over the
  whole B-scan (11 x 11 Gaussian, σ 1.5, zero padding), in fp32, Adam, the loss read back after
  every step as a training loop that logs it does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SLICE_SCALE = 0.1
RECON_WEIGHT, SSIM_WEIGHT, SEG_WEIGHT = 5.0, 0.1, 1.0


def gaussian_ssim(prediction: Tensor, truth: Tensor, size: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM of two images ``[H, W]`` with a Gaussian window and zero padding."""
    offsets = torch.arange(size, dtype=prediction.dtype, device=prediction.device) - (size - 1) / 2
    line = torch.exp(-(offsets**2) / (2 * sigma**2))
    line = line / line.sum()
    window = (line[:, None] * line[None, :])[None, None]

    def blur(image: Tensor) -> Tensor:
        return F.conv2d(image[None, None], window, padding=size // 2)[0, 0]

    mu_p, mu_t = blur(prediction), blur(truth)
    var_p = blur(prediction * prediction) - mu_p**2
    var_t = blur(truth * truth) - mu_t**2
    cov = blur(prediction * truth) - mu_p * mu_t
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return ssim_map.mean()


class ReferenceWireLayer(nn.Module):
    """``forward(x [N, I]) -> [N, O]``: ``cos(ω0 (W_f x + b_f)) exp(-(s0 (W_s x + b_s))²)``."""

    def __init__(self, in_dim: int, out_dim: int, first: bool, omega_0: float = 30.0, scale_0: float = 10.0) -> None:
        super().__init__()
        self.omega_0, self.scale_0 = omega_0, scale_0
        self.freq = nn.Linear(in_dim, out_dim)
        self.scale = nn.Linear(in_dim, out_dim)
        bound = 1 / in_dim if first else math.sqrt(6 / in_dim) / omega_0
        with torch.no_grad():
            for linear in (self.freq, self.scale):
                linear.weight.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cos(self.omega_0 * self.freq(x)) * torch.exp(-((self.scale_0 * self.scale(x)) ** 2))


class ReferenceNetwork(nn.Module):
    """``forward(points [N, 4], code [L]) -> (intensity [N], probabilities [N, C])``.

    ``points`` are ``[x, y, z, SLO]``; the code is tiled onto every point of the first layer.
    """

    def __init__(self, latent_size: int = 128, hidden: int = 128, layers: int = 6, classes: int = 13) -> None:
        super().__init__()
        point_dim = 4
        self.first = ReferenceWireLayer(point_dim + latent_size, hidden, first=True)
        self.later = nn.ModuleList(
            ReferenceWireLayer(point_dim + hidden, hidden, first=False) for _ in range(layers - 1)
        )
        self.intensity_head = nn.Linear(hidden, 1)
        self.class_head = nn.Linear(hidden, classes)

    def forward(self, points: Tensor, code: Tensor) -> tuple[Tensor, Tensor]:
        h = self.first(torch.cat([points, code.expand(points.shape[0], -1)], dim=-1))
        for layer in self.later:
            h = layer(torch.cat([points, h], dim=-1)) + h
        return torch.sigmoid(self.intensity_head(h))[:, 0], torch.softmax(self.class_head(h), dim=-1)


def reference_recon(intensity: Tensor, truth: Tensor) -> Tensor:
    """``Combi`` of one B-scan ``[H, W]``: MSE + 0.1 (1 - SSIM)."""
    return F.mse_loss(intensity, truth) + SSIM_WEIGHT * (1 - gaussian_ssim(intensity, truth))


def reference_loss(intensity: Tensor, probabilities: Tensor, truth: Tensor, labels: Tensor, code: Tensor) -> Tensor:
    """The paper config's training loss of one B-scan: ``intensity``/``truth`` ``[H, W]``, ``labels [H, W]``."""
    recon = reference_recon(intensity, truth)
    one_hot = F.one_hot(labels.reshape(-1).long(), probabilities.shape[-1]).float()
    seg = F.binary_cross_entropy(probabilities, one_hot)
    return RECON_WEIGHT * recon + SEG_WEIGHT * seg + (code**2).mean()


class ReferenceTrainer:
    """One B-scan of one eye per step: coordinates of all its pixels, the code tiled per point.

    ``volumes``/``labels`` ``[E, H, W, S]``, ``slo [E, W, S]`` (the eyes' input B-scans).
    """

    def __init__(self, volumes: Tensor, labels: Tensor, slo: Tensor, latent_size: int = 128, lr: float = 1e-4) -> None:
        self.volumes, self.labels, self.slo = volumes, labels, slo
        eyes, height, width, slices = volumes.shape
        device = volumes.device
        self.codes = nn.Parameter(torch.randn(eyes, latent_size, device=device) * 0.01)
        self.network = ReferenceNetwork(latent_size).to(device)
        self.optimizer = torch.optim.Adam([*self.network.parameters(), self.codes], lr=lr)
        rows, cols = torch.meshgrid(
            torch.linspace(-1, 1, height, device=device), torch.linspace(-1, 1, width, device=device), indexing="ij"
        )
        self.plane = torch.stack([rows, cols], -1).reshape(-1, 2)  # [H W, 2]
        self.slice_z = torch.linspace(-1, 1, slices, device=device) * SLICE_SCALE
        self.height, self.width = height, width

    @property
    def points_per_step(self) -> int:
        return self.height * self.width

    def points(self, eye: int, bscan: int) -> Tensor:
        """``[H W, 4]`` inputs ``[x, y, z, SLO]`` of every pixel of one B-scan."""
        n = self.points_per_step
        z = self.slice_z[bscan].expand(n, 1)
        slo = self.slo[eye, :, bscan].repeat(self.height)[:, None]
        return torch.cat([self.plane, z, slo], dim=-1)

    def step(self, eye: int, bscan: int) -> float:
        intensity, probabilities = self.network(self.points(eye, bscan), self.codes[eye])
        loss = reference_loss(
            intensity.view(self.height, self.width),
            probabilities,
            self.volumes[eye, :, :, bscan],
            self.labels[eye, :, :, bscan],
            self.codes[eye],
        )
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()

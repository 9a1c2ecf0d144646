"""A re-creation of the reference implementation's training step, for throughput comparisons.

Written from the paper's description (not from its code): residual MLP, the network input
``[x, y, z, SLO, latent code]`` concatenated to the hidden state of every layer, WIRE
activations, 6 x 128, the eye's latent code tiled onto every point, and one whole B-scan
per step with the combined MSE + SSIM loss on the B-scan and cross-entropy on its labels,
in fp32, with the loss read back after every step as a training loop that logs it does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anisotropic_interpolation.losses import ssim_patches


class ReferenceResMLP(nn.Module):
    """``forward(inputs [N, I]) -> [N, 1 + C]``; every layer sees ``cat(h, inputs)``."""

    def __init__(self, in_dim: int, hidden: int = 128, layers: int = 6, classes: int = 13,
                 omega_0: float = 30.0, scale_0: float = 10.0) -> None:
        super().__init__()
        self.omega_0, self.scale_0 = omega_0, scale_0
        self.first = nn.Linear(in_dim, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden + in_dim, hidden) for _ in range(layers - 1))
        self.head = nn.Linear(hidden, 1 + classes)

    def gabor(self, x: Tensor) -> Tensor:
        return torch.cos(self.omega_0 * x) * torch.exp(-(self.scale_0 * x) ** 2)

    def forward(self, inputs: Tensor) -> Tensor:
        h = self.gabor(self.first(inputs))
        for layer in self.layers:
            h = h + self.gabor(layer(torch.cat([h, inputs], dim=-1)))
        return self.head(h)


class ReferenceTrainer:
    """One B-scan per step: coordinates of all its pixels, the code tiled per point."""

    def __init__(self, volumes: Tensor, labels: Tensor, slo: Tensor, latent_size: int = 128,
                 lr: float = 1e-4) -> None:
        self.volumes, self.labels, self.slo = volumes, labels, slo  # [E, H, W, S], [E, H, W, S], [E, W, S]
        eyes, height, width, _ = volumes.shape
        device = volumes.device
        self.codes = nn.Parameter(torch.randn(eyes, latent_size, device=device) * 0.01)
        self.network = ReferenceResMLP(3 + 1 + latent_size).to(device)
        self.optimizer = torch.optim.Adam([*self.network.parameters(), self.codes], lr=lr)
        rows, cols = torch.meshgrid(torch.linspace(-1, 1, height, device=device),
                                    torch.linspace(-1, 1, width, device=device), indexing="ij")
        self.plane = torch.stack([rows, cols], -1).reshape(-1, 2)  # [H W, 2]
        self.height, self.width = height, width

    @property
    def points_per_step(self) -> int:
        return self.height * self.width

    def step(self, eye: int, bscan: int) -> float:
        n = self.points_per_step
        z = torch.full((n, 1), -1 + 2 * bscan / max(self.volumes.shape[3] - 1, 1), device=self.volumes.device)
        slo = self.slo[eye, :, bscan].repeat(self.height)[:, None]
        inputs = torch.cat([self.plane, z, slo, self.codes[eye].expand(n, -1)], dim=-1)
        out = self.network(inputs)
        intensity = torch.sigmoid(out[:, 0]).view(1, self.height, self.width)
        truth = self.volumes[eye, :, :, bscan][None]
        recon = F.mse_loss(intensity, truth) + 1 - ssim_patches(intensity, truth)
        loss = 5.0 * recon + F.cross_entropy(out[:, 1:], self.labels[eye, :, :, bscan].reshape(-1).long())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()

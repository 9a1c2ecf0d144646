"""The per-eye fitted baselines, each registering one eye to a frozen atlas with its own network.

- :class:`IdirFit`: a fresh SIREN displacement field per eye (IDIR-style, our baseline), with the
  loss of the GINR fit (``TEST``) and no shared latent space.

The reference code's two:

- :class:`ReferenceAffineFit`: ``x -> A x + t`` on the normalised coordinates (a 3 x 3
  matrix from the identity and a translation from 0); loss MSE of the intensity plus
  ``0.01 * mean |(A - I, t)|``.
- :class:`ReferenceInrFit`: a SIREN ``3 -> 128 x 4 -> 3`` (four sine layers, a linear
  output) giving ``u(x)``; every weight after the first layer starts ``U(-0.001, 0.001)``
  with zero biases, so ``u`` starts near 0; loss MSE of the intensity plus
  ``0.1 * mean |u|``. The reference registers it to the PRETRAINED atlas (before the joint
  fine-tuning), and so does the pipeline.

Both use Adam (3e-5 and 100 epochs in the reference, ``EVALUATION.REFERENCE_BASELINE_*``) and
the intensities only: an unseen eye's labels are for scoring.
"""

from __future__ import annotations

import torch
from torch import nn

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.architectures.siren import Siren
from atlas_registration.losses import LossWeights, registration_loss
from atlas_registration.routines.eye_fitting import EyeFit

AFFINE_PENALTY = 0.01
"""Weight of the L1 pull of ``(A - I, t)`` towards the identity in the reference's affine fit."""
INR_PENALTY = 0.1
"""Weight of the L1 pull of ``u`` towards 0 in the reference's per-eye INR."""
INR_HIDDEN, INR_LAYERS, INR_INIT = 128, 4, 1e-3
"""The reference's per-eye SIREN: width, sine layers, uniform range of every non-first weight."""


class ReferenceAffineFit(EyeFit):
    """``u(x) = (A - I) x + t`` with ``A [3, 3]`` from the identity and ``t [3]`` from 0."""

    def __init__(self, atlas: AtlasINR, learning_rate: float, gamma: float, weight: float = AFFINE_PENALTY) -> None:
        super().__init__(atlas, LossWeights(mse=1.0, seg=0.0, ssim=0.0, reg=0.0), learning_rate, gamma)
        self.weight = weight
        self.matrix = nn.Parameter(torch.eye(3))
        self.translation = nn.Parameter(torch.zeros(3))

    def offset(self) -> torch.Tensor:
        """``A - I [3, 3]``."""
        return self.matrix - torch.eye(3, device=self.matrix.device)

    def displacement(self, coords: torch.Tensor) -> torch.Tensor:
        """``u [B, N, 3]`` at ``coords [B, N, 3]``, in fp32."""
        return coords.float() @ self.offset().T + self.translation

    def penalty(self) -> torch.Tensor:
        """``mean |(A - I, t)|`` over the 12 parameters."""
        return torch.cat([self.offset().reshape(-1), self.translation]).abs().mean()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        terms = registration_loss(self.atlas, self.displacement, batch, self.weights)
        terms["affine_l1"] = self.penalty()
        terms["loss"] = terms["loss"] + self.weight * terms["affine_l1"]
        self.log_dict(
            {f"fit/{k}": v for k, v in terms.items()},
            on_step=False,
            on_epoch=True,
            batch_size=batch["intensity"].shape[0],
        )
        return terms["loss"]


def reference_siren(omega: float) -> Siren:
    """The reference's per-eye SIREN ``3 -> 128 x 4 -> 3``, non-first weights ``U(+-0.001)``, zero biases."""
    network = Siren(3, INR_HIDDEN, INR_LAYERS, 3, omega)
    linears = [module for module in network.modules() if isinstance(module, nn.Linear)]
    with torch.no_grad():
        for layer in linears[1:]:
            layer.weight.uniform_(-INR_INIT, INR_INIT)
            layer.bias.zero_()
    return network


class ReferenceInrFit(EyeFit):
    """A fresh :func:`reference_siren` displacement field for this eye; loss MSE + ``weight * mean |u|``."""

    def __init__(
        self, atlas: AtlasINR, learning_rate: float, gamma: float, omega: float, weight: float = INR_PENALTY
    ) -> None:
        super().__init__(
            atlas, LossWeights(mse=1.0, seg=0.0, ssim=0.0, reg=weight, reg_type="l1"), learning_rate, gamma
        )
        self.deformation = reference_siren(omega)

    def displacement(self, coords: torch.Tensor) -> torch.Tensor:
        """``u [B, N, 3]`` at ``coords [B, N, 3]``."""
        return self.deformation(coords)


class IdirFit(EyeFit):
    """A fresh SIREN displacement field for this eye alone (no latent sharing)."""

    def __init__(
        self,
        atlas: AtlasINR,
        weights: LossWeights,
        learning_rate: float,
        gamma: float,
        hidden: int,
        num_layers: int,
        omega: float,
        out_scale: float,
    ) -> None:
        super().__init__(atlas, weights, learning_rate, gamma)
        self.deformation = Siren(3, hidden, num_layers, 3, omega, out_scale)

    def displacement(self, coords: torch.Tensor) -> torch.Tensor:
        return self.deformation(coords)

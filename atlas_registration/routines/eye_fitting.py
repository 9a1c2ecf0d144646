"""Registering one unseen eye to a frozen atlas: the base of every per-eye fit, and GINR's.

Every per-eye fit learns a displacement ``u`` from one eye's (possibly sparse) voxels with the
atlas frozen; :class:`EyeFit` holds what they share and subclasses say what trains:

- :class:`LatentFit`: the trained GINR deformation network is frozen, only the eye's latent
  code is optimised (the paper's inference for unseen eyes);
- the per-eye baselines (IDIR-style SIREN, the reference's affine and INR fits) are in
  :mod:`atlas_registration.baselines.inr_fits`.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import nn

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.architectures.siren import DeformationNetwork, initial_codes
from atlas_registration.losses import LossWeights, registration_loss
from atlas_registration.trainers import check_finite_loss, check_finite_weights


class EyeFit(L.LightningModule):
    """A per-eye registration to a frozen atlas; subclasses define ``displacement`` and what trains.

    Args:
        atlas: the atlas INR (frozen here).
        weights: loss weights (labels are not used: unseen eyes have none).
        learning_rate, gamma: Adam learning rate and its exponential decay per epoch.
    """

    RATE_KEY = "TEST.LEARNING_RATE"
    """The config key of ``learning_rate``, named when the fit diverges."""

    def __init__(self, atlas: AtlasINR, weights: LossWeights, learning_rate: float, gamma: float) -> None:
        super().__init__()
        self.atlas = atlas.requires_grad_(False).eval()
        self.weights = weights
        self.learning_rate, self.gamma = learning_rate, gamma

    def displacement(self, coords: torch.Tensor) -> torch.Tensor:
        """``u [B, N, 3]`` at ``coords [B, N, 3]``."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        check_finite_weights(self, batch_idx, self.RATE_KEY, self.learning_rate)
        terms = registration_loss(self.atlas, self.displacement, batch, self.weights)
        check_finite_loss(self, terms, batch_idx, self.RATE_KEY, self.learning_rate)
        self.log_dict(
            {f"fit/{k}": v for k, v in terms.items()},
            on_step=False,
            on_epoch=True,
            batch_size=batch["intensity"].shape[0],
        )
        return terms["loss"]

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        optimiser = torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=self.learning_rate)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=self.gamma)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class LatentFit(EyeFit):
    """Only a latent code ``[1, L]`` trains; the deformation network and atlas stay bit-identical.

    The code starts as the training codes did (``init``: ``shifted`` or ``centred``, see
    :func:`initial_codes`).
    """

    def __init__(
        self,
        atlas: AtlasINR,
        deformation: DeformationNetwork,
        weights: LossWeights,
        learning_rate: float,
        gamma: float,
        init_std: float,
        init: str = "shifted",
    ) -> None:
        super().__init__(atlas, weights, learning_rate, gamma)
        self.deformation = deformation.requires_grad_(False).eval()
        self.latent = nn.Parameter(initial_codes(1, deformation.latent_dim, init_std, init))

    def displacement(self, coords: torch.Tensor) -> torch.Tensor:
        return self.deformation(coords, self.latent.expand(coords.shape[0], -1))

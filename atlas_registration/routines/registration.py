"""GINR atlas registration: one deformation network for all eyes, conditioned on per-eye latent codes.

For training eye ``e`` with latent code ``z_e``, the FiLM-modulated SIREN gives the
displacement ``u(x; z_e)``; the atlas INR queried at ``x + u(x; z_e)`` should reproduce the
eye's intensities and labels at ``x``. The deformation network and the codes train at the
learning rate, the (pretrained) atlas is fine-tuned jointly at a lower one.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import nn

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.architectures.siren import deformation_network, initial_codes
from atlas_registration.inference import predict_on_grid
from atlas_registration.losses import LossWeights, registration_loss
from atlas_registration.trainers import check_finite_loss, check_finite_weights
from retina_data.metrics import mean_dice


class GINRAtlasRegistration(L.LightningModule):
    """Joint training of the deformation network, the latent codes and the atlas.

    Args:
        num_eyes: training eyes (one latent code each).
        num_classes: atlas label classes.
        latent_size, latent_std, latent_init: latent code size, initial standard deviation and
            initialisation (``shifted`` or ``centred``, see :func:`initial_codes`).
        disp: the deformation network (:func:`deformation_network`).
        atlas: ``dict(hidden, num_layers, omega, linear_last, intensity_sigmoid)`` of the atlas INR.
        learning_rate, latent_lr_factor, atlas_lr_factor, gamma: optimiser settings: the codes
            and the atlas train at ``learning_rate`` times their factor; exponential decay per epoch.
        weights: loss weights (:class:`LossWeights` fields).
        latent_weight: weight of the ``|z|^2`` prior.
        chunk: points per forward pass in validation.
    """

    def __init__(
        self,
        num_eyes: int,
        num_classes: int,
        latent_size: int,
        latent_std: float,
        disp: dict,
        atlas: dict,
        learning_rate: float,
        latent_lr_factor: float,
        atlas_lr_factor: float,
        gamma: float,
        weights: dict,
        latent_weight: float,
        chunk: int = 262144,
        latent_init: str = "shifted",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.num_classes, self.chunk, self.latent_weight = num_classes, chunk, latent_weight
        self.learning_rate, self.gamma = learning_rate, gamma
        self.latent_lr_factor, self.atlas_lr_factor = latent_lr_factor, atlas_lr_factor
        self.atlas = AtlasINR(
            atlas["hidden"],
            atlas["num_layers"],
            num_classes,
            atlas["omega"],
            linear_last=atlas["linear_last"],
            intensity_sigmoid=atlas["intensity_sigmoid"],
        )
        self.deformation = deformation_network(disp, latent_size)
        self.latents = nn.Embedding(num_eyes, latent_size)
        with torch.no_grad():
            self.latents.weight.copy_(initial_codes(num_eyes, latent_size, latent_std, latent_init))
        self.weights = LossWeights(**weights)

    def displacement(self, coords: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """``u [B, N, 3]`` at ``coords [B, N, 3]`` for latent codes ``latent [B, L]``."""
        return self.deformation(coords, latent)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        check_finite_weights(self, batch_idx, "TRAINING.LEARNING_RATE", self.learning_rate)
        latent = self.latents(batch["eye"])
        terms = registration_loss(self.atlas, lambda x: self.displacement(x, latent), batch, self.weights)
        prior = latent.pow(2).sum(-1).mean()
        loss = terms.pop("loss") + self.latent_weight * prior
        check_finite_loss(
            self, {**terms, "latent": prior, "loss": loss}, batch_idx, "TRAINING.LEARNING_RATE", self.learning_rate
        )
        self.log_dict(
            {f"train/{k}": v for k, v in terms.items()},
            on_step=False,
            on_epoch=True,
            batch_size=latent.shape[0],
            sync_dist=True,
        )
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=latent.shape[0], sync_dist=True
        )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        latent = self.latents(batch["eye"])[:1]
        prediction = predict_on_grid(self.atlas, batch["coords"][0], lambda x: self.displacement(x, latent), self.chunk)
        truth = batch["intensity"][0].cpu().numpy()
        mse = float(np.mean((prediction.intensity - truth) ** 2))
        dice = mean_dice(prediction.labels, batch["labels"][0].cpu().numpy(), self.num_classes)
        self.log_dict({"val/mse": mse, "val/dice": dice}, batch_size=1, sync_dist=True)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        lr = self.learning_rate
        groups = [
            {"params": self.deformation.parameters(), "lr": lr},
            {"params": self.latents.parameters(), "lr": lr * self.latent_lr_factor},
        ]
        if self.atlas_lr_factor > 0:
            groups.append({"params": self.atlas.parameters(), "lr": lr * self.atlas_lr_factor})
        else:
            self.atlas.requires_grad_(False)
        optimiser = torch.optim.Adam(groups)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=self.gamma)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

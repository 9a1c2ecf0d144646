"""Step 1 of the method: fit the atlas INR to the median atlas (intensity and median labels)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.losses import label_loss
from atlas_registration.trainers import check_finite_loss, check_finite_weights


class AtlasPretraining(L.LightningModule):
    """Fits :class:`AtlasINR` to a median atlas: intensity MSE + ``seg_weight`` times the label term.

    The reference: MSE + BCE of the softmax (weight 1), Adam 1e-4, the learning rate times 0.99
    after every epoch, 500 epochs.

    Args:
        hidden, num_layers, num_classes, omega, linear_last, intensity_sigmoid: the atlas network
            (see :class:`AtlasINR`).
        learning_rate: Adam learning rate.
        seg_weight: weight of the label term.
        gamma: exponential decay of the learning rate per epoch.
        seg_loss: ``bce`` or ``ce`` (:func:`label_loss`).
    """

    def __init__(
        self,
        hidden: int,
        num_layers: int,
        num_classes: int,
        omega: float,
        learning_rate: float,
        seg_weight: float,
        gamma: float = 0.99,
        seg_loss: str = "bce",
        linear_last: bool = True,
        intensity_sigmoid: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.learning_rate, self.seg_weight, self.gamma, self.seg_loss = learning_rate, seg_weight, gamma, seg_loss
        self.atlas = AtlasINR(
            hidden, num_layers, num_classes, omega, linear_last=linear_last, intensity_sigmoid=intensity_sigmoid
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        check_finite_weights(self, batch_idx, "ATLAS_PRETRAINING.LEARNING_RATE", self.learning_rate)
        intensity, logits = self.atlas(batch["coords"])
        mse = F.mse_loss(intensity.float(), batch["intensity"])
        seg = label_loss(logits, batch["labels"], self.seg_loss)
        loss = mse + self.seg_weight * seg
        check_finite_loss(
            self,
            {"mse": mse, self.seg_loss: seg, "loss": loss},
            batch_idx,
            "ATLAS_PRETRAINING.LEARNING_RATE",
            self.learning_rate,
        )
        self.log_dict(
            {"pretrain/mse": mse, f"pretrain/{self.seg_loss}": seg, "pretrain/loss": loss},
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            sync_dist=True,
        )
        return loss

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        optimiser = torch.optim.Adam(self.atlas.parameters(), lr=self.learning_rate)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=self.gamma)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

"""Step 1 of the method: fit the atlas INR to the median atlas (intensity and median labels)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

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

    def __init__(self, hidden: int, num_layers: int, num_classes: int, omega: float,
                 learning_rate: float, seg_weight: float, gamma: float = 0.99, seg_loss: str = "bce",
                 linear_last: bool = True, intensity_sigmoid: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.atlas = AtlasINR(hidden, num_layers, num_classes, omega, linear_last=linear_last,
                              intensity_sigmoid=intensity_sigmoid)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        check_finite_weights(self, batch_idx, "ATLAS_PRETRAINING.LEARNING_RATE", self.hparams.learning_rate)
        intensity, logits = self.atlas(batch["coords"])
        mse = F.mse_loss(intensity.float(), batch["intensity"])
        seg = label_loss(logits, batch["labels"], self.hparams.seg_loss)
        loss = mse + self.hparams.seg_weight * seg
        check_finite_loss(self, {"mse": mse, self.hparams.seg_loss: seg, "loss": loss}, batch_idx,
                          "ATLAS_PRETRAINING.LEARNING_RATE", self.hparams.learning_rate)
        self.log_dict({"pretrain/mse": mse, f"pretrain/{self.hparams.seg_loss}": seg, "pretrain/loss": loss},
                      prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def configure_optimizers(self) -> dict:
        optimiser = torch.optim.Adam(self.atlas.parameters(), lr=self.hparams.learning_rate)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=self.hparams.gamma)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

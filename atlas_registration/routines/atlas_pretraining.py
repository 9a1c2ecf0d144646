"""Step 1 of the method: fit the atlas INR to the median atlas (intensity and median labels)."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.datasets.coordinates import grid_coordinates
from atlas_registration.routines.losses import label_loss


class AtlasPointsDataset(Dataset):
    """Random voxels of the median atlas: each item holds ``points`` of them.

    Items: ``coords [P, 3]`` (normalised), ``intensity [P]``, ``labels [P]`` int64.
    """

    def __init__(self, intensity: np.ndarray, labels: np.ndarray, axes: tuple[np.ndarray, np.ndarray, np.ndarray],
                 points: int, steps: int) -> None:
        self.coords = grid_coordinates(axes).reshape(-1, 3)
        self.intensity = torch.from_numpy(np.ascontiguousarray(intensity, dtype=np.float32)).reshape(-1)
        self.labels = torch.from_numpy(labels.astype(np.int64)).reshape(-1)
        self.points = min(points, self.coords.shape[0])
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        index = torch.randint(0, self.coords.shape[0], (self.points,))
        return {"coords": self.coords[index], "intensity": self.intensity[index], "labels": self.labels[index]}


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
        intensity, logits = self.atlas(batch["coords"])
        mse = F.mse_loss(intensity.float(), batch["intensity"])
        seg = label_loss(logits, batch["labels"], self.hparams.seg_loss)
        loss = mse + self.hparams.seg_weight * seg
        self.log_dict({"pretrain/mse": mse, f"pretrain/{self.hparams.seg_loss}": seg, "pretrain/loss": loss},
                      prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def configure_optimizers(self) -> dict:
        optimiser = torch.optim.Adam(self.atlas.parameters(), lr=self.hparams.learning_rate)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=self.hparams.gamma)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

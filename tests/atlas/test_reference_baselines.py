"""The reference's affine-on-coordinates and per-eye INR baselines: start, shape of u, loss terms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.baselines.inr_fits import ReferenceAffineFit, ReferenceInrFit, reference_siren


def tiny_atlas() -> AtlasINR:
    torch.manual_seed(0)
    return AtlasINR(hidden=8, num_layers=2, num_classes=3, omega=30.0)


def test_reference_siren_is_four_sine_layers_and_a_linear_output_with_tiny_later_weights() -> None:
    torch.manual_seed(0)
    network = reference_siren(30.0)
    linears = [m for m in network.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (3, 128),
        (128, 128),
        (128, 128),
        (128, 128),
        (128, 3),
    ]
    assert linears[0].weight.abs().max() > 0.1  # the first layer keeps the SIREN range U(-1/3, 1/3)
    for layer in linears[1:]:
        assert layer.weight.abs().max() <= 1e-3 and torch.count_nonzero(layer.bias) == 0
    u = network(torch.rand(1, 50, 3) * 2 - 1)
    assert u.abs().max() < 1e-2  # |u| <= sum |w| * |h| <= 128 * 1e-3


def test_affine_fit_starts_at_the_identity_and_applies_a_x_plus_t() -> None:
    fit = ReferenceAffineFit(tiny_atlas(), learning_rate=3e-5, gamma=1.0)
    coords = torch.tensor([[[0.5, -0.25, 1.0]]])
    assert torch.equal(fit.displacement(coords), torch.zeros(1, 1, 3))
    with torch.no_grad():
        fit.matrix.copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        fit.translation.copy_(torch.tensor([0.0, 0.1, 0.0]))
    # x' = A x + t = (1.0, -0.15, 1.0): u = x' - x = (0.5, 0.1, 0)
    torch.testing.assert_close(fit.displacement(coords), torch.tensor([[[0.5, 0.1, 0.0]]]))
    # mean |(A - I, t)| over 12 parameters = (1 + 0.1) / 12
    assert float(fit.penalty().detach()) == pytest.approx(1.1 / 12)


def patch_batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    coords = torch.rand(1, 4, 3, 2, 3) * 2 - 1
    return {"coords": coords, "intensity": torch.rand(1, 4, 3, 2), "labels": torch.zeros(1, 4, 3, 2, dtype=torch.long)}


def test_affine_loss_is_intensity_mse_plus_a_hundredth_of_the_parameter_l1() -> None:
    atlas = tiny_atlas()
    fit = ReferenceAffineFit(atlas, learning_rate=3e-5, gamma=1.0)
    with torch.no_grad():
        fit.translation.copy_(torch.tensor([0.12, 0.0, 0.0]))
    batch = patch_batch()
    fit.log_dict = lambda *args, **kwargs: None  # no trainer attached
    loss = fit.training_step(batch, 0)
    coords = batch["coords"].reshape(1, -1, 3)
    intensity, _ = atlas(coords + torch.tensor([0.12, 0.0, 0.0]))
    mse = torch.mean((intensity.reshape(batch["intensity"].shape) - batch["intensity"]) ** 2)
    assert float(loss) == pytest.approx(float(mse) + 0.01 * 0.12 / 12, rel=1e-5)


def test_inr_loss_is_intensity_mse_plus_a_tenth_of_mean_abs_u_and_ignores_labels() -> None:
    atlas = tiny_atlas()
    torch.manual_seed(2)
    fit = ReferenceInrFit(atlas, learning_rate=3e-5, gamma=1.0, omega=30.0)
    batch = patch_batch()
    fit.log_dict = lambda *args, **kwargs: None
    loss = fit.training_step(batch, 0)
    coords = batch["coords"].reshape(1, -1, 3)
    u = fit.displacement(coords)
    intensity, _ = atlas(coords + u)
    mse = torch.mean((intensity.reshape(batch["intensity"].shape) - batch["intensity"]) ** 2)
    assert float(loss) == pytest.approx(float(mse) + 0.1 * float(u.abs().mean()), rel=1e-5)
    assert all(not p.requires_grad for p in fit.atlas.parameters())

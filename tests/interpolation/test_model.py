"""Every backbone x activation x encoding: output shapes, and a few steps that lower the loss."""

from __future__ import annotations

import itertools

import pytest
import torch

from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.model.activations import make_activation

BACKBONES = {  # (SKIP_CONNECTION, INPUT_COORD_TO_ALL_LAYERS)
    "mlp": (False, False), "mlp_inject": (False, True), "resmlp": (True, False), "resmlp_inject": (True, True),
}
ACTIVATIONS = ("SIREN", "WIRE", "FINER", "RELU")
ENCODINGS = {
    "None": {},
    "FF": {"FF": {"MAPPING_SIZE": 8, "SCALE": 1.0, "FACTOR": 1.0}},
    "Hashgrid": {"HASHGRID": {"N_LEVELS": 4, "N_FEATURES_PER_LEVEL": 2, "LOG2_HASHMAP_SIZE": 8,
                              "BASE_RESOLUTION": 4, "FINEST_RESOLUTION": 32}},
}
COMBINATIONS = list(itertools.product(BACKBONES, ACTIVATIONS, ENCODINGS))


def _network(make_config, backbone: str, activation: str, encoding: str, **model):
    skip, inject = BACKBONES[backbone]
    config = make_config(MODEL={"SKIP_CONNECTION": skip, "INPUT_COORD_TO_ALL_LAYERS": inject,
                                "ACTIVATION": activation, "NUM_LAYERS": 3, **model},
                         POS_ENCODING={"TYPE": encoding, **ENCODINGS[encoding]})
    torch.manual_seed(0)
    return build_network(config, NetworkInputs(use_slo=True, latent_size=4, num_classes=5))


def _batch(n: int = 256):
    generator = torch.Generator().manual_seed(1)
    coords = torch.rand(n, 3, generator=generator) * 2 - 1
    extra = torch.rand(n, 1, generator=generator)
    eye = torch.randint(2, (n,), generator=generator)
    target = 0.5 + 0.3 * torch.sin(3 * coords[:, 0]) * torch.cos(2 * coords[:, 2])
    labels = (coords[:, 0] > 0).long() + 2 * (coords[:, 1] > 0).long()
    return coords, extra, eye, target, labels


@pytest.mark.parametrize(("backbone", "activation", "encoding"), COMBINATIONS)
def test_network_outputs_one_intensity_and_class_logits_per_point(make_config, backbone, activation, encoding) -> None:
    network = _network(make_config, backbone, activation, encoding)
    coords, extra, eye, _, _ = _batch(10)
    logit, classes = network(coords, extra, torch.zeros(2, 4), eye)
    assert logit.shape == (10,) and classes.shape == (10, 5)


@pytest.mark.parametrize(("backbone", "activation", "encoding"), COMBINATIONS)
def test_a_few_adam_steps_lower_the_loss(make_config, backbone, activation, encoding) -> None:
    network = _network(make_config, backbone, activation, encoding)
    codes = torch.nn.Parameter(torch.randn(2, 4) * 0.01)
    coords, extra, eye, target, labels = _batch()
    optimizer = torch.optim.Adam([*network.parameters(), codes], lr=1e-3)

    def loss() -> torch.Tensor:
        logit, classes = network(coords, extra, codes, eye)
        return (torch.sigmoid(logit) - target).square().mean() + torch.nn.functional.cross_entropy(classes, labels)

    first = loss().item()
    for _ in range(15):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < first


def test_film_modulated_siren_lowers_the_loss(make_config) -> None:
    network = _network(make_config, "mlp", "SIREN", "None", MODULATION=True)
    codes = torch.nn.Parameter(torch.randn(2, 4) * 0.01)
    coords, extra, eye, target, _ = _batch()
    optimizer = torch.optim.Adam([*network.parameters(), codes], lr=1e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = (torch.sigmoid(network(coords, extra, codes, eye)[0]) - target).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("backbone_name", ["resmlp_inject", "mlp", "mlp_inject", "resmlp"])
def test_latent_projected_once_per_eye_equals_the_code_tiled_onto_every_point(make_config, backbone_name) -> None:
    """The reference's formulation: every layer that gets the input sees ``cat(h, x, y, z, SLO, code)``."""
    network = _network(make_config, backbone_name, "WIRE", "None")
    coords, extra, eye, _, _ = _batch(20)
    codes = torch.randn(2, 4)
    backbone = network.backbone
    hidden = backbone.shape.hidden_size
    point = torch.cat([coords, extra], dim=-1)
    tiled_input = torch.cat([point, codes[eye]], dim=-1)  # the code tiled onto every point
    h = None
    for index, layer in enumerate(backbone.layers):
        weight, inputs = layer.weight, h
        if index < backbone.input_layers:
            latent = backbone.latent_projection.weight[index * hidden:(index + 1) * hidden]
            weight = torch.cat([weight, latent], dim=1)
            inputs = tiled_input if index == 0 else torch.cat([h, tiled_input], dim=-1)
        out = backbone.activation(inputs @ weight.T + layer.bias)
        h = h + out if backbone.shape.residual and index > 0 else out
    assert torch.allclose(backbone(coords, extra, codes, eye), h, atol=1e-5)


def test_wire_backward_matches_the_derivative_of_the_formula() -> None:
    x = torch.linspace(-0.3, 0.3, 41, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(make_activation("WIRE", omega_0=30.0, scale_0=10.0), (x,))
    composed = torch.cos(30.0 * x) * torch.exp(-(10.0 * x) ** 2)
    (expected,) = torch.autograd.grad(composed.sum(), x)
    (ours,) = torch.autograd.grad(make_activation("WIRE", omega_0=30.0, scale_0=10.0)(x).sum(), x)
    assert torch.allclose(ours, expected)


def test_network_without_code_slo_or_labels_gives_intensity_only(make_config) -> None:
    config = make_config(MODEL={"ACTIVATION": "RELU"})
    network = build_network(config, NetworkInputs(use_slo=False, latent_size=0, num_classes=0))
    logit, classes = network(torch.zeros(3, 3), None, None, None)
    assert logit.shape == (3,) and classes is None


def test_dropout_is_active_in_training_and_off_in_evaluation(make_config) -> None:
    network = _network(make_config, "mlp", "RELU", "None", DROPOUT=0.5)
    coords, extra, eye, _, _ = _batch(50)
    codes = torch.zeros(2, 4)
    network.eval()
    assert torch.equal(network(coords, extra, codes, eye)[0], network(coords, extra, codes, eye)[0])
    network.train()
    assert not torch.equal(network(coords, extra, codes, eye)[0], network(coords, extra, codes, eye)[0])

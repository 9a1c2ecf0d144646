"""Every backbone x activation x encoding: output shapes, and a few steps that lower the loss."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.model.activations import make_activation

BACKBONES = {  # (SKIP_CONNECTION, INPUT_COORD_TO_ALL_LAYERS)
    "mlp": (False, False),
    "mlp_inject": (False, True),
    "resmlp": (True, False),
    "resmlp_inject": (True, True),
}
ACTIVATIONS = ("SIREN", "WIRE", "FINER", "RELU")
ENCODINGS = {
    "None": {},
    "FF": {"FF": {"MAPPING_SIZE": 8, "SCALE": 1.0, "FACTOR": 1.0}},
    "Hashgrid": {
        "HASHGRID": {
            "N_LEVELS": 4,
            "N_FEATURES_PER_LEVEL": 2,
            "LOG2_HASHMAP_SIZE": 8,
            "BASE_RESOLUTION": 4,
            "FINEST_RESOLUTION": 32,
        }
    },
}
COMBINATIONS = list(itertools.product(BACKBONES, ACTIVATIONS, ENCODINGS))


def _network(make_config, backbone: str, activation: str, encoding: str, **model):
    skip, inject = BACKBONES[backbone]
    config = make_config(
        MODEL={
            "SKIP_CONNECTION": skip,
            "INPUT_COORD_TO_ALL_LAYERS": inject,
            "ACTIVATION": activation,
            "NUM_LAYERS": 3,
            **model,
        },
        POS_ENCODING={"TYPE": encoding, **ENCODINGS[encoding]},
    )
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


@pytest.mark.parametrize("film", ["reference", "ours"])
def test_film_modulated_siren_lowers_the_loss(make_config, film) -> None:
    network = _network(make_config, "mlp", "SIREN", "None", MODULATION=True, FILM=film)
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


def _gabor(f: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """WIRE written out: ``cos(30 f) exp(-(10 s)^2)``."""
    return torch.cos(30.0 * f) * torch.exp(-((10.0 * s) ** 2))


@pytest.mark.parametrize(
    ("backbone_name", "latent_to_all"),
    [
        ("resmlp_inject", False),
        ("mlp", False),
        ("mlp_inject", False),
        ("resmlp", False),
        ("resmlp_inject", True),
        ("mlp_inject", True),
    ],
)
def test_latent_projected_once_per_eye_equals_the_code_tiled_onto_every_point(
    make_config, backbone_name, latent_to_all
) -> None:
    """The reference's formulation: the first layer sees ``cat(x, y, z, SLO, code)``, later layers
    ``cat(h, x, y, z, SLO)`` with the input re-injected (and the code too with LATENT_TO_ALL_LAYERS);
    WIRE is ``cos(30 f) exp(-(10 s)^2)`` of two separate linear maps f and s of that input."""
    network = _network(make_config, backbone_name, "WIRE", "None", LATENT_TO_ALL_LAYERS=latent_to_all)
    coords, extra, eye, _, _ = _batch(20)
    codes = torch.randn(2, 4)
    backbone = network.backbone
    hidden = backbone.shape.hidden_size
    point = torch.cat([coords, extra], dim=-1)
    code_layers = len(backbone.layers) if latent_to_all else 1
    h = None
    for index, layer in enumerate(backbone.layers):
        inputs = point if index == 0 else torch.cat([h, point], dim=-1) if index < backbone.input_layers else h
        weight = layer.weight
        if index < code_layers:
            inputs = torch.cat([inputs, codes[eye]], dim=-1)  # the code tiled onto every point
            latent = backbone.latent_projection.weight[2 * hidden * index : 2 * hidden * (index + 1)]
            weight = torch.cat([weight, latent], dim=1)
        frequency = inputs @ weight[:hidden].T + layer.bias[:hidden]
        scale = inputs @ weight[hidden:].T + layer.bias[hidden:]
        out = _gabor(frequency, scale)
        h = h + out if backbone.shape.residual and index > 0 else out
    assert torch.allclose(backbone(coords, extra, codes, eye), h, atol=1e-5)


@pytest.mark.parametrize("latent_to_all", [False, True])
def test_only_the_layers_that_get_the_code_have_latent_columns(make_config, latent_to_all) -> None:
    network = _network(make_config, "resmlp_inject", "SIREN", "None", LATENT_TO_ALL_LAYERS=latent_to_all)
    assert network.backbone.latent_projection.weight.shape == (16 * (3 if latent_to_all else 1), 4)


@pytest.mark.parametrize("shared", [False, True])
def test_wire_backward_matches_the_derivative_of_the_formula(shared: bool) -> None:
    wire = make_activation("WIRE", omega_0=30.0, scale_0=10.0, shared_linear=shared)
    x = torch.linspace(-0.3, 0.3, 42, dtype=torch.float64).reshape(3, 14).requires_grad_(True)
    assert torch.autograd.gradcheck(wire, (x,))
    frequency, scale = (x, x) if shared else x.chunk(2, dim=-1)
    (expected,) = torch.autograd.grad(_gabor(frequency, scale).sum(), x)
    (ours,) = torch.autograd.grad(wire(x).sum(), x)
    assert torch.allclose(ours, expected)
    assert wire(x).shape == ((3, 14) if shared else (3, 7))


def test_wire_with_a_shared_linear_has_one_map_per_layer(make_config) -> None:
    separate = _network(make_config, "mlp", "WIRE", "None")
    config = make_config(MODEL={"ACTIVATION": "WIRE", "NUM_LAYERS": 3}, POS_ENCODING={"WIRE": {"SHARED_LINEAR": True}})
    shared = build_network(config, NetworkInputs(use_slo=True, latent_size=4, num_classes=5))
    assert [layer.out_features for layer in separate.backbone.layers] == [32, 32, 32]
    assert [layer.out_features for layer in shared.backbone.layers] == [16, 16, 16]


def test_reference_film_leaves_the_first_layer_unmodulated_and_shifts_outside_omega(make_config) -> None:
    """``h0 = sin(30 (W0 x + b0))``; ``h_i = sin(30 gamma_i (W_i h + b_i) + beta_i)`` for every later layer."""
    network = _network(make_config, "mlp", "SIREN", "None", MODULATION=True)
    backbone = network.backbone
    coords, extra, eye, _, _ = _batch(20)
    codes = torch.randn(2, 4)
    with torch.no_grad():  # away from the initial gamma ~ 0, beta = 0
        backbone.film.weight.normal_()
        backbone.film.bias.normal_()
        for layer in backbone.layers:
            layer.bias.normal_(std=0.1)
    hidden, layers = 16, 3
    film = backbone.film(codes)[eye]
    assert film.shape[1] == 2 * hidden * (layers - 1)
    h = torch.sin(30.0 * backbone.layers[0](torch.cat([math.pi * coords, extra], dim=-1)))
    for index in range(1, layers):
        gamma = film[:, (index - 1) * hidden : index * hidden]
        beta = film[:, (layers - 1 + index - 1) * hidden : (layers - 1 + index) * hidden]
        h = torch.sin(30.0 * gamma * backbone.layers[index](h) + beta)
    assert torch.allclose(backbone(coords, extra, codes, eye), h, atol=1e-4)


def test_our_film_modulates_every_layer_inside_omega(make_config) -> None:
    network = _network(make_config, "mlp", "SIREN", "None", MODULATION=True, FILM="ours")
    backbone = network.backbone
    coords, extra, eye, _, _ = _batch(20)
    codes = torch.randn(2, 4)
    hidden, layers = 16, 3
    film = backbone.film(codes)[eye]
    h = torch.cat([math.pi * coords, extra], dim=-1)
    for index in range(layers):
        gamma = film[:, index * hidden : (index + 1) * hidden]
        beta = film[:, (layers + index) * hidden : (layers + index + 1) * hidden]
        h = torch.sin(30.0 * (gamma * backbone.layers[index](h) + beta))
    assert torch.allclose(backbone(coords, extra, codes, eye), h, atol=1e-4)


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

"""Initial weights: the reference's ranges per layer kind (``MODEL.INIT: reference``) and ours.

A uniform ``U(-b, b)`` draw over thousands of entries has its largest magnitude just below
``b`` and a standard deviation of ``b / sqrt(3)``; both are checked against the bound each
rule gives from the layer sizes.
"""

from __future__ import annotations

import math

import pytest
import torch
from tiny_configs import tiny_config

from anisotropic_interpolation.model import NetworkInputs, build_network

POINT, LATENT, HIDDEN, CLASSES = 4, 64, 64, 13  # x, y, z, SLO; code; width; classes


def _network(activation: str, **model):
    config = tiny_config(MODEL={"ACTIVATION": activation, "NUM_LAYERS": 3, "HIDDEN_SIZE": HIDDEN, **model})
    torch.manual_seed(0)
    return build_network(config, NetworkInputs(use_slo=True, latent_size=LATENT, num_classes=CLASSES))


def _uniform_within(values: torch.Tensor, bound: float) -> bool:
    """``values`` (thousands) look like ``U(-bound, bound)``: none beyond, the largest within 5 %,
    the standard deviation within 5 % of ``bound / sqrt(3)``."""
    largest = values.abs().max().item()
    spread = values.std().item() / (bound / math.sqrt(3))
    return largest <= bound * (1 + 1e-6) and largest > 0.95 * bound and 0.95 < spread < 1.05


def _spans(values: torch.Tensor, bound: float) -> bool:
    """A few dozen ``values`` lie within ``bound`` and reach beyond ``0.8 bound``."""
    largest = values.abs().max().item()
    return 0.8 * bound < largest <= bound * (1 + 1e-6)


def _first_layer_weight(network) -> torch.Tensor:
    """The first layer's weight over ``[x, y, z, SLO, code]``, latent columns included."""
    backbone = network.backbone
    rows = backbone.layers[0].out_features
    return torch.cat([backbone.layers[0].weight, backbone.latent_projection.weight[:rows]], dim=1)


@pytest.mark.parametrize("activation", ["SIREN", "WIRE", "FINER"])
def test_periodic_layers_have_the_siren_ranges_of_their_own_inputs(activation: str) -> None:
    """First layer ``U(+-1/in)`` with in = point inputs + code; later layers ``U(+-sqrt(6/in)/30)``
    with in = hidden + point inputs (the code enters the first layer only); WIRE's two maps alike."""
    network = _network(activation)
    assert _uniform_within(_first_layer_weight(network), 1.0 / (POINT + LATENT))
    for layer in network.backbone.layers[1:]:
        maps = layer.weight.chunk(2) if activation == "WIRE" else (layer.weight,)
        assert all(_uniform_within(weight, math.sqrt(6.0 / (HIDDEN + POINT)) / 30.0) for weight in maps)
        assert _spans(layer.bias, 1.0 / math.sqrt(HIDDEN + POINT))


def test_finer_first_layer_bias_spans_the_scale() -> None:
    assert _spans(_network("FINER").backbone.layers[0].bias, 10.0)


@pytest.mark.parametrize("activation", ["SIREN", "WIRE", "RELU"])
def test_heads_keep_pytorchs_default_initialisation(activation: str) -> None:
    heads = _network(activation).heads.linear
    assert _uniform_within(heads.weight, 1.0 / math.sqrt(HIDDEN))
    assert torch.all(heads.bias.abs() <= 1.0 / math.sqrt(HIDDEN)) and torch.any(heads.bias != 0)


def test_relu_layers_keep_pytorchs_default_initialisation() -> None:
    network = _network("RELU")
    assert _uniform_within(_first_layer_weight(network), 1.0 / math.sqrt(POINT + LATENT))
    for layer in network.backbone.layers[1:]:
        assert _uniform_within(layer.weight, 1.0 / math.sqrt(HIDDEN + POINT))
        assert _spans(layer.bias, 1.0 / math.sqrt(HIDDEN + POINT))


def test_our_initialisation_gives_kaiming_relu_layers_and_heads_like_later_layers() -> None:
    relu = _network("RELU", INIT="ours")
    for layer in relu.backbone.layers[1:]:
        assert _uniform_within(layer.weight, math.sqrt(6.0 / (HIDDEN + POINT)))
        assert torch.all(layer.bias == 0)
    siren_heads = _network("SIREN", INIT="ours").heads.linear
    assert _uniform_within(siren_heads.weight, math.sqrt(6.0 / HIDDEN) / 30.0)


def test_reference_film_weights_use_the_larger_fan_and_zero_biases() -> None:
    network = _network("SIREN", MODULATION=True, SKIP_CONNECTION=False, INPUT_COORD_TO_ALL_LAYERS=False)
    backbone = network.backbone
    assert _uniform_within(backbone.layers[0].weight, 1.0 / POINT)
    for layer in backbone.layers[1:]:
        assert _uniform_within(layer.weight, math.sqrt(6.0 / HIDDEN) / 30.0)  # max(in, out) = 64
    assert _uniform_within(backbone.film.weight, math.sqrt(6.0 / (2 * HIDDEN)) / 30.0)  # max(64, 128)
    assert all(torch.all(bias == 0) for bias in [*(layer.bias for layer in backbone.layers), backbone.film.bias])

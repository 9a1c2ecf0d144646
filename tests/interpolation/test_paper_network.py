"""The paper configs build the reference's networks; the fast configs switch on ours, key by key."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from anisotropic_interpolation.config import ExperimentConfig, load_experiment_config
from anisotropic_interpolation.model import NetworkInputs, build_network
from retina_data.config import from_dict
from retina_data.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "interpolation"
CLASSES = 13


def _paper_network(name: str, **overrides):
    config = load_experiment_config(CONFIGS / name, [f"{key}={value}" for key, value in overrides.items()])
    torch.manual_seed(0)
    return build_network(
        config, NetworkInputs(use_slo=True, latent_size=config.TRAINING.LATENT_CODE.SIZE, num_classes=CLASSES)
    )


def _count(network) -> int:
    return sum(p.numel() for p in network.parameters())


def _linear(fan_in: int, fan_out: int) -> int:
    return fan_in * fan_out + fan_out


def test_paper_geninr_network_has_the_reference_parameter_count() -> None:
    """WIRE 6 x 128 with two linear maps per layer; the first layer sees [x, y, z, SLO, code],
    later ones [x, y, z, SLO, h]; heads Linear(128, 1) and Linear(128, 13)."""
    point, code, hidden = 3 + 1, 128, 128
    wire = lambda fan_in: 2 * _linear(fan_in, hidden)  # noqa: E731 - W_f, b_f, W_s, b_s
    expected = wire(point + code) + 5 * wire(hidden + point) + _linear(hidden, 1) + _linear(hidden, CLASSES)
    assert expected == 206_094
    assert _count(_paper_network("geninr_config.yaml")) == expected


def test_paper_singleinr_network_has_the_reference_parameter_count() -> None:
    point, hidden = 3 + 1, 512
    expected = (
        _linear(point, hidden) + 2 * _linear(hidden + point, hidden) + _linear(hidden, 1) + _linear(hidden, CLASSES)
    )
    assert _count(_paper_network("singleinr_config.yaml")) == expected


def test_fast_geninr_network_shares_the_wire_map_and_feeds_the_code_to_every_layer() -> None:
    point, code, hidden = 4, 128, 128
    expected = _linear(point + code, hidden) + 5 * _linear(hidden + point + code, hidden) + _linear(hidden, 1 + CLASSES)
    assert _count(_paper_network("geninr_fast.yaml")) == expected


def test_siren_without_encoding_sees_pi_times_the_coordinates_but_the_plain_slo() -> None:
    reference = _paper_network("singleinr_config.yaml")
    unscaled = _paper_network("singleinr_config.yaml", **{"POS_ENCODING.COORD_FACTOR": 1.0})
    unscaled.load_state_dict(reference.state_dict())
    coords = torch.tensor([[0.2, -0.7, 0.05], [-1.0, 1.0, -0.1]])
    slo = torch.tensor([[0.3], [0.9]])
    expected = unscaled(math.pi * coords, slo, None, None)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(reference(coords, slo, None, None), expected))


def test_wire_without_encoding_sees_the_coordinates_unscaled() -> None:
    assert _paper_network("geninr_config.yaml").backbone.encoding.factor == 1.0


def test_a_config_without_our_keys_builds_the_paper_network() -> None:
    """The reference's own YAML lacks our keys: their defaults are the reference's."""
    paper = load_experiment_config(CONFIGS / "geninr_config.yaml")
    bare = from_dict({"MODEL": {"ACTIVATION": "WIRE"}}, ExperimentConfig)
    for config in (paper, bare):
        assert config.PREPROCESSING.SLICE_COORD_SCALE == 0.1
        assert (config.MODEL.LATENT_TO_ALL_LAYERS, config.MODEL.INIT, config.MODEL.FILM) == (
            False,
            "reference",
            "reference",
        )
        assert (config.POS_ENCODING.COORD_FACTOR, config.POS_ENCODING.WIRE.SHARED_LINEAR) == (None, False)
        assert config.POS_ENCODING.HASHGRID is None or not config.POS_ENCODING.HASHGRID.DENSE_COARSE_LEVELS


@pytest.mark.parametrize(
    "overrides",
    [
        ["MODEL.LATENT_TO_ALL_LAYERS=true", "MODEL.INPUT_COORD_TO_ALL_LAYERS=false"],
        ["MODEL.INIT=kaiming"],
        ["MODEL.FILM=mine"],
        ["POS_ENCODING.COORD_FACTOR=0"],
    ],
)
def test_bad_network_keys_are_refused_with_their_name(overrides) -> None:
    key = overrides[0].split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_experiment_config(CONFIGS / "geninr_config.yaml", overrides)

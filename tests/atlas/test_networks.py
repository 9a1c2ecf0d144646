"""The atlas tree's networks against the reference: the FiLM SIREN's layers, initial weights and bounded
output, the code initialisation, the atlas's layers and heads, and fp32 coordinates under bf16 autocast."""

from __future__ import annotations

import math

import pytest
import torch

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.architectures.siren import FiLMSiren, ReferenceFiLMSiren, initial_codes
from atlas_registration.config import AtlasConfig
from atlas_registration.training import registration_module


def test_reference_film_siren_initial_weights_and_zero_biases() -> None:
    torch.manual_seed(0)
    net = ReferenceFiLMSiren(3, 128, 128, 4, 3, 30.0, init_bound=1e-3)
    assert net.first.weight.abs().max() <= 1 / 3 and net.first.weight.abs().max() > 0.3
    later = [layer.weight for layer in net.layers] + [film.weight for film in net.film] + [net.head.weight]
    for weight in later:
        assert weight.abs().max() <= 1e-3 and weight.abs().max() > 0.99e-3
    biases = [net.first.bias, net.head.bias] + [m.bias for m in [*net.layers, *net.film]]
    assert all(torch.count_nonzero(bias) == 0 for bias in biases)


@pytest.mark.parametrize(("num_layers", "skip_last", "used"), [(4, True, 3), (4, False, 4), (2, True, 1), (1, True, 1)])
def test_reference_film_siren_uses_num_layers_minus_one_layers(num_layers: int, skip_last: bool, used: int) -> None:
    net = ReferenceFiLMSiren(3, 8, 16, num_layers, 3, 30.0, skip_last=skip_last)
    assert 1 + len(net.layers) == used and len(net.film) == used - 1


def test_reference_film_siren_formula_first_layer_unmodulated_shift_outside_omega() -> None:
    torch.manual_seed(1)
    net = ReferenceFiLMSiren(3, 6, 5, 3, 3, 30.0, init_bound=0.05)  # two layers in use
    x, z = torch.rand(1, 7, 3) * 2 - 1, torch.randn(1, 6)
    h0 = torch.sin(30.0 * (x @ net.first.weight.T + net.first.bias))
    gamma_beta = z @ net.film[0].weight.T + net.film[0].bias
    gamma, beta = gamma_beta[:, None, :5], gamma_beta[:, None, 5:]
    h1 = torch.sin(30.0 * gamma * (h0 @ net.layers[0].weight.T + net.layers[0].bias) + beta)
    expected = torch.sin(30.0 * (h1 @ net.head.weight.T + net.head.bias))
    torch.testing.assert_close(net(x, z), expected)


def test_reference_film_siren_output_is_bounded_by_one() -> None:
    torch.manual_seed(2)
    net = ReferenceFiLMSiren(3, 8, 16, 4, 3, 30.0, init_bound=1.0)  # large weights: the sine saturates
    u = net(torch.rand(2, 500, 3) * 2 - 1, torch.randn(2, 8) * 10)
    assert u.abs().max() <= 1.0 and u.abs().max() > 0.9


def test_shifted_codes_start_at_one_and_zero() -> None:
    torch.manual_seed(3)
    codes = initial_codes(400, 128, 0.01)
    first, second = codes[:, :64], codes[:, 64:]
    assert first.mean() == pytest.approx(1.0, abs=1e-3) and second.mean() == pytest.approx(0.0, abs=1e-3)
    assert first.std() == pytest.approx(0.01, rel=0.02) and second.std() == pytest.approx(0.01, rel=0.02)
    assert initial_codes(400, 128, 0.01, "centred").mean() == pytest.approx(0.0, abs=1e-3)


def test_paper_config_builds_the_reference_networks_and_codes() -> None:
    torch.manual_seed(4)
    model = registration_module(AtlasConfig(), num_eyes=80, num_classes=10)
    assert isinstance(model.deformation, ReferenceFiLMSiren)
    assert len(model.deformation.layers) == 2  # NUM_LAYERS 4: layers 0..2
    codes = model.latents.weight.detach()
    assert codes.shape == (80, 128)
    assert codes[:, :64].mean() == pytest.approx(1.0, abs=1e-3) and codes[:, 64:].mean() == pytest.approx(0.0, abs=1e-3)
    trunk = model.atlas.trunk
    assert len(trunk.layers) == 3 and trunk.last is not None and trunk.last.weight.shape == (256, 256)
    assert trunk.last.weight.abs().max() <= math.sqrt(6 / 256) / 30
    assert model.atlas.intensity_head.out_features == 1 and model.atlas.label_head.out_features == 10


def test_reference_atlas_intensity_is_a_sigmoid_and_ours_is_linear() -> None:
    torch.manual_seed(5)
    ours = AtlasINR(16, 2, 4, 30.0, linear_last=False, intensity_sigmoid=False)
    reference = AtlasINR(16, 2, 4, 30.0)
    reference.load_state_dict(
        {**ours.state_dict(), **{k: v for k, v in reference.state_dict().items() if k.startswith("trunk.last")}}
    )
    with torch.no_grad():
        reference.trunk.last.weight.copy_(torch.eye(16))
        reference.trunk.last.bias.zero_()
        coords = torch.rand(50, 3) * 2 - 1
        torch.testing.assert_close(reference(coords)[0], torch.sigmoid(ours(coords)[0]))


def test_pigan_film_siren_is_a_plain_siren_at_zero_code() -> None:
    torch.manual_seed(6)
    net = FiLMSiren(3, 4, 8, 2, 3, 30.0)
    torch.nn.init.zeros_(net.film.weight)
    x = torch.rand(1, 5, 3)
    h = x
    for layer in net.layers:
        h = torch.sin(30.0 * layer.linear(h))
    torch.testing.assert_close(net(x, torch.randn(1, 4)), net.head(h))


def test_a_tenth_of_a_voxel_survives_the_forward_pass_in_bf16_autocast() -> None:
    # coordinates near 0.8 of a 496-row axis: one voxel is 2 / 495, and bf16 rounds there to 1/256 (~1 voxel),
    # so in bf16 x + u == x for most points; the atlas reads x + u (and the deformation x) in fp32
    torch.manual_seed(7)
    atlas = AtlasINR(64, 3, 10, 30.0)
    first = atlas.trunk.layers[0]
    x = torch.full((2000, 3), 0.8) + torch.rand(2000, 3) * 0.01
    u = torch.zeros(2000, 3)
    u[:, 0] = 0.1 * 2 / 495
    with torch.no_grad():
        expected = first(x + u) - first(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = first(x + u) - first(x)
            atlas(x + u)  # the whole forward pass runs under autocast
    assert got.dtype == torch.float32
    assert (got != 0).float().mean() > 0.99
    torch.testing.assert_close(got, expected)


def test_reference_deformation_output_is_fp32_under_bf16_autocast() -> None:
    net = ReferenceFiLMSiren(3, 8, 16, 4, 3, 30.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        u = net(torch.rand(1, 10, 3), initial_codes(1, 8, 0.01))
    assert u.dtype == torch.float32

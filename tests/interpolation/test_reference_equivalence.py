"""The paper config computes the reference's function and loss: checked against an independent
re-creation of the reference step (``benchmarks/reference_step.py``, written from REFERENCE.md).

Our network is built from ``geninr_config.yaml`` as a run builds it; its weights are copied
into the re-creation (two WIRE linears per layer, the code tiled onto the first layer's
input, separate heads); then both see the same whole B-scan of the same eye. Outputs, the
training loss and its gradient with respect to the eye's code must agree, which pins the
coordinates (z / 10), the code's way into the network, WIRE, the heads, Combi with its 0.1
and whole-B-scan Gaussian SSIM, the softmax BCE and the latent penalty together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anisotropic_interpolation.config import load_experiment_config
from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.sampling import SparseVolumes, slice_coordinates
from anisotropic_interpolation.training import objective_from_config
from benchmarks.reference_step import ReferenceNetwork, reference_loss

PAPER_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "interpolation" / "geninr_config.yaml"
EYES, H, W, S, LATENT, CLASSES = 2, 14, 12, 5, 128, 13


def _copy_weights(ours, reference: ReferenceNetwork) -> None:
    """Our stacked layers (``[W_f; W_s]`` rows, ``[h, point]`` columns, the code's columns in
    ``latent_projection``) into the reference's per-map linears (``[point, code]`` / ``[point, h]``)."""
    backbone, hidden = ours.backbone, ours.backbone.shape.hidden_size
    with torch.no_grad():
        for index, layer in enumerate(backbone.layers):
            target = reference.first if index == 0 else reference.later[index - 1]
            for half, linear in enumerate((target.freq, target.scale)):
                rows = slice(half * hidden, (half + 1) * hidden)
                if index == 0:
                    linear.weight.copy_(torch.cat([layer.weight[rows], backbone.latent_projection.weight[rows]], 1))
                else:
                    linear.weight.copy_(torch.cat([layer.weight[rows, hidden:], layer.weight[rows, :hidden]], 1))
                linear.bias.copy_(layer.bias[rows])
        reference.intensity_head.weight.copy_(ours.heads.linear.weight[:1])
        reference.intensity_head.bias.copy_(ours.heads.linear.bias[:1])
        reference.class_head.weight.copy_(ours.heads.linear.weight[1:])
        reference.class_head.bias.copy_(ours.heads.linear.bias[1:])


@pytest.fixture(scope="module")
def paper():
    config = load_experiment_config(PAPER_CONFIG)
    generator = torch.Generator().manual_seed(0)
    volumes = torch.rand(EYES, H, W, S, generator=generator)
    labels = torch.randint(CLASSES, (EYES, H, W, S), generator=generator, dtype=torch.uint8)
    slo = torch.rand(EYES, W, S, generator=generator)
    positions = np.arange(S) * 0.12
    slices = torch.as_tensor(slice_coordinates(positions, positions, config.PREPROCESSING.SLICE_COORD_SCALE))
    data = SparseVolumes(volumes, labels, slo, slices.expand(EYES, -1).contiguous())
    torch.manual_seed(1)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=LATENT, num_classes=CLASSES))
    reference = ReferenceNetwork(LATENT)
    _copy_weights(network, reference)
    codes = torch.randn(EYES, LATENT, generator=generator) * 0.3
    return config, data, network, reference, codes


def _reference_points(data: SparseVolumes, eye: int, bscan: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    z = torch.full((H * W, 1), float(torch.linspace(-1, 1, S)[bscan]) / 10)
    return torch.cat([rows.reshape(-1, 1), cols.reshape(-1, 1), z, data.slo[eye, :, bscan].repeat(H)[:, None]], -1)


def test_the_paper_network_has_the_reference_parameter_count(paper):
    _, _, network, reference, _ = paper
    assert sum(p.numel() for p in network.parameters()) == sum(p.numel() for p in reference.parameters()) == 206_094


@pytest.mark.parametrize(("eye", "bscan"), [(0, 0), (1, 3)])
def test_outputs_loss_and_code_gradient_equal_the_reference_on_a_whole_bscan(paper, eye, bscan):
    config, data, network, reference, codes = paper
    batch = data.bscans(torch.tensor([eye]), torch.tensor([bscan]))
    ours_codes = codes.clone().requires_grad_(True)
    logit, class_logits = network(batch.coords, batch.extra, ours_codes, batch.eye)
    loss = objective_from_config(network, config).terms(
        logit, class_logits, batch.eye, batch.intensity, batch.labels, ours_codes
    )[0, 0]
    loss.backward()

    code = codes[eye].clone().requires_grad_(True)
    intensity, probabilities = reference(_reference_points(data, eye, bscan), code)
    expected = reference_loss(
        intensity.view(H, W), probabilities, data.intensity[eye, :, :, bscan], data.labels[eye, :, :, bscan], code
    )
    expected.backward()

    assert torch.allclose(torch.sigmoid(logit), intensity, atol=1e-6)
    assert torch.allclose(torch.softmax(class_logits, -1), probabilities, atol=1e-6)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(ours_codes.grad[eye], code.grad, rtol=1e-4, atol=1e-7)
    assert torch.count_nonzero(ours_codes.grad[1 - eye]) == 0  # only the B-scan's own eye is updated

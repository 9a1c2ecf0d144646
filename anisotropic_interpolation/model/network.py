"""The implicit network of one experiment: encoding, coordinate MLP and output heads."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from anisotropic_interpolation.config import ExperimentConfig
from anisotropic_interpolation.model.activations import Activation, make_activation
from anisotropic_interpolation.model.backbones import BackboneShape, CoordinateMLP
from anisotropic_interpolation.model.encodings import (
    Encoding,
    FourierFeatures,
    HashGridEncoding,
    IdentityEncoding,
)
from anisotropic_interpolation.model.heads import OutputHeads

COORD_DIM = 3


@dataclass(frozen=True)
class NetworkInputs:
    """What the data offers the network: SLO input, latent code size and classes (0: none)."""

    use_slo: bool
    latent_size: int
    num_classes: int


class ImplicitNetwork(nn.Module):
    """``forward(coords [N, 3], extra [N, X] | None, codes [E, L] | None, eye [N])``
    ``-> (intensity_logit [N], class_logits [N, C] | None)``."""

    def __init__(self, backbone: CoordinateMLP, heads: OutputHeads, inputs: NetworkInputs) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads
        self.inputs = inputs

    def forward(
        self, coords: Tensor, extra: Tensor | None, codes: Tensor | None, eye: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        return self.heads(self.backbone(coords, extra, codes, eye))


def identity_factor(config: ExperimentConfig) -> float:
    """The factor on the coordinates with no encoding: ``POS_ENCODING.COORD_FACTOR``, or the
    reference's pi before SIREN layers and 1 before any other."""
    if config.POS_ENCODING.COORD_FACTOR is not None:
        return config.POS_ENCODING.COORD_FACTOR
    return math.pi if config.MODEL.ACTIVATION == "SIREN" else 1.0


def make_encoding(config: ExperimentConfig) -> Encoding:
    """The coordinate encoding named by ``POS_ENCODING.TYPE``."""
    enc = config.POS_ENCODING
    if enc.TYPE == "FF":
        assert enc.FF is not None  # PosEncoding refuses TYPE 'FF' without its block
        return FourierFeatures(COORD_DIM, enc.FF.MAPPING_SIZE, enc.FF.SCALE, enc.FF.FACTOR, seed=config.TRAINING.SEED)
    if enc.TYPE == "Hashgrid":
        grid = enc.HASHGRID
        assert grid is not None  # PosEncoding refuses TYPE 'Hashgrid' without its block
        return HashGridEncoding(
            grid.DIM,
            grid.N_LEVELS,
            grid.N_FEATURES_PER_LEVEL,
            grid.LOG2_HASHMAP_SIZE,
            grid.BASE_RESOLUTION,
            grid.FINEST_RESOLUTION,
            grid.DENSE_COARSE_LEVELS,
        )
    return IdentityEncoding(COORD_DIM, identity_factor(config))


def make_config_activation(config: ExperimentConfig) -> Activation:
    """The activation named by ``MODEL.ACTIVATION`` with its ``POS_ENCODING.<NAME>`` parameters."""
    enc, name = config.POS_ENCODING, config.MODEL.ACTIVATION
    if name == "WIRE":
        return make_activation(
            name, omega_0=enc.WIRE.OMEGA_0, scale_0=enc.WIRE.SCALE_0, shared_linear=enc.WIRE.SHARED_LINEAR
        )
    if name == "FINER":
        return make_activation(
            name, omega_0=enc.FINER.OMEGA_0, scale_0=enc.FINER.SCALE_0, scale_requires_grad=enc.FINER.SCALE_REQ_GRAD
        )
    return make_activation(name, omega_0=enc.SIREN.OMEGA_0, kaiming=config.MODEL.INIT == "ours")


def build_network(config: ExperimentConfig, inputs: NetworkInputs) -> ImplicitNetwork:
    """The network an experiment config describes, for data with the given ``inputs``."""
    model = config.MODEL
    activation = make_config_activation(config)
    shape = BackboneShape(
        extra_features=int(inputs.use_slo),
        latent_size=inputs.latent_size,
        hidden_size=model.HIDDEN_SIZE,
        num_layers=model.NUM_LAYERS,
        residual=model.SKIP_CONNECTION,
        inject_input=model.INPUT_COORD_TO_ALL_LAYERS,
        latent_to_all_layers=model.LATENT_TO_ALL_LAYERS,
        modulation=model.MODULATION,
        film=model.FILM,
        dropout=model.DROPOUT,
    )
    backbone = CoordinateMLP(make_encoding(config), activation, shape)
    heads = OutputHeads(model.HIDDEN_SIZE, inputs.num_classes, activation if model.INIT == "ours" else None)
    return ImplicitNetwork(backbone, heads, inputs)

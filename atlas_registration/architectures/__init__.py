"""Networks: SIREN, the FiLM-modulated SIREN deformation fields and the multi-head atlas."""

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.architectures.siren import (
    FiLMSiren,
    ReferenceFiLMSiren,
    SineLayer,
    Siren,
    deformation_network,
    initial_codes,
)

__all__ = ["AtlasINR", "FiLMSiren", "ReferenceFiLMSiren", "SineLayer", "Siren", "deformation_network", "initial_codes"]

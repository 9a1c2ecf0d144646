"""Networks: SIREN, the FiLM-modulated SIREN deformation field and the multi-head atlas."""

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.architectures.siren import FiLMSiren, SineLayer, Siren

__all__ = ["AtlasINR", "FiLMSiren", "SineLayer", "Siren"]

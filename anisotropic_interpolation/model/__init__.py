"""Implicit networks: coordinate encodings, activations, MLP backbones and output heads."""

from anisotropic_interpolation.model.network import ImplicitNetwork, NetworkInputs, build_network

__all__ = ["ImplicitNetwork", "NetworkInputs", "build_network"]

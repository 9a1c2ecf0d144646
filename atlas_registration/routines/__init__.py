"""LightningModules: atlas pretraining, joint GINR atlas registration, the per-eye latent fit."""

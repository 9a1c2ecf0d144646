"""LightningModules: atlas pretraining, GINR atlas registration, per-eye fits (latent-only, IDIR)."""

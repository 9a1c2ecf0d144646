"""The baselines: classical (SimpleITK) registration, per-eye INR and affine fits, each run by name."""

"""A continuous retinal atlas learned jointly with implicit-neural-representation registration.

Layout (one module per concern):

- ``GINR_Atlas_base.py``: the whole flow of one fold (entry script);
  ``pretrain_atlas.py``, ``GINR_Atlas_base_inference.py``, ``GINR_Atlas_resolution_inference.py``:
  its steps on their own.
- ``config.py``: the config schema (the paper's keys plus documented additions).
- ``architectures/``: SIREN, the FiLM-modulated SIREN deformation network, the multi-head atlas INR.
- ``datasets/``: eyes of a fold, physical coordinates, random strided patches, whole eyes.
- ``routines/``: LightningModules (atlas pretraining, GINR registration, per-eye latent-only and
  IDIR fits), losses, regularisers, dense prediction, Trainer construction.
- ``experiments/``: the pipeline (median atlas -> atlas INR -> GINR -> inference -> baselines ->
  metrics -> outputs) and the resolution experiment.
- ``utilities/`` and ``baselines/``: median atlas, label mapping, Jacobians, metric tables, figures
  and the SimpleITK baselines.
"""

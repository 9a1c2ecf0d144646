"""A continuous retinal atlas learned jointly with implicit-neural-representation registration.

Layout (one module per stage, named as in ``anisotropic_interpolation``):

- ``GINR_Atlas_base.py``: the whole flow of one fold (entry script);
  ``pretrain_atlas.py``, ``GINR_Atlas_base_inference.py``, ``GINR_Atlas_resolution_inference.py``:
  its steps on their own; ``commandline.py``, ``inference_commandline.py``: what they share.
- ``config.py``: the config schema (the paper's keys plus documented additions).
- ``pipeline.py``: the flow (run folder, fold, training, evaluation).
- ``training.py``: atlas pretraining and joint GINR training (stages with checkpoints);
  ``trainers.py``: Lightning Trainers, devices, precision, safe checkpoints;
  ``median_atlas.py``: the median atlas of the training eyes.
- ``fitting.py``: the test-time fit of one unseen eye (latent-only for GINR).
- ``inference.py``: dense, chunked prediction on any grid; inverse warps.
- ``evaluation.py``: the evaluation loop and both protocols' metric rows (ours 3-D,
  ``bscan_metrics.py`` the paper's 2-D); ``jacobian.py``: folding of a dense displacement.
- ``reporting.py``: result tables (through ``retina_data.result_tables``), NIfTI volumes;
  ``plots.py``: figures.
- ``losses.py``, ``regularisers.py``: the registration loss and its smoothness priors.
- ``architectures/``: SIREN, the FiLM-modulated SIREN deformation network, the multi-head atlas INR.
- ``datasets/``: eyes of a fold and the atlas label mapping, physical coordinates, random strided
  patches, whole eyes, median-atlas points.
- ``routines/``: LightningModules (atlas pretraining, GINR registration, the per-eye latent fit).
- ``baselines/``: each baseline by name (``methods.py``), SimpleITK registration
  (``classical.py``) and the per-eye INR and affine fits (``inr_fits.py``).
"""

"""Test-time fit: a frozen population network, a new latent code per unseen eye.

Only the codes are optimised (the network, hash grid included, is frozen and outside the
optimiser), on the eye's input (sparse) B-scans with the reconstruction loss and the code
penalty of the config (labels of unseen eyes are never used). Several eyes are fitted in
one batch (``TEST.NUM_SAMPLES``). With ``TEST.SAMPLING: bscan`` (the reference) every step
takes one whole input B-scan of each eye and sums the eyes' losses, so each code follows
exactly its own fit (Adam is elementwise); with ``patches`` every step draws random patches
from all of them. ``TEST.KEEP: best`` returns each eye's code of its lowest-loss epoch.
``TEST.CONVERGENCE_TOL`` stops a batch early once a summary improves the loss by less than
that fraction. With ``TEST.HOLDOUT_BSCANS`` some input B-scans of each eye are left out of
the fit; their loss chooses each eye's code (``KEEP: best``), and ``HOLDOUT_REFIT`` fits again
on all inputs for each eye's chosen number of epochs. A non-finite loss or code stops the fit
with a :class:`~retina_data.errors.TrainingDivergedError`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from anisotropic_interpolation.config import ExperimentConfig
from anisotropic_interpolation.model import ImplicitNetwork
from anisotropic_interpolation.sampling import SparseVolumes, TrainingVolumes
from anisotropic_interpolation.training import (
    BatchSource,
    PointObjective,
    Schedule,
    StepLosses,
    StepPlan,
    check_finite,
    heldout_losses,
    make_step,
    maybe_compile,
    objective_from_config,
    split_holdout,
)
from retina_data.eye import Eye


def shape_batches(eyes: list[Eye], batch_size: int) -> list[list[int]]:
    """Indices of ``eyes`` grouped by shape, in chunks of at most ``batch_size``."""
    by_shape: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for index, eye in enumerate(eyes):
        by_shape[eye.shape].append(index)
    return [group[i : i + batch_size] for group in by_shape.values() for i in range(0, len(group), batch_size)]


class LatentFitter:
    """Fits latent codes of unseen eyes against a frozen ``network``.

    Args:
        network: the trained population network (its parameters are left untouched).
        config: the experiment config (``TEST`` section, loss and coordinate settings).
        device: where to fit.
    """

    def __init__(self, network: ImplicitNetwork, config: ExperimentConfig, device: torch.device) -> None:
        self.network, self.config, self.device = network, config, device
        self.objective: PointObjective = objective_from_config(network, config)
        self.compiled: Callable[..., Tensor] | None = None
        self.generator = torch.Generator(device=device).manual_seed(config.TRAINING.SEED)
        self.epochs_run: list[int] = []
        self.epoch_losses: list[Tensor] = []
        """Per fitted batch: ``[epochs, E]`` each eye's mean loss of every epoch (on the CPU)."""
        self.heldout_losses: list[Tensor] = []
        """Per fitted batch with ``TEST.HOLDOUT_BSCANS``: ``[epochs, E]`` each eye's held-out loss."""
        self.chosen_epochs: list[Tensor] = []
        """Per fitted batch with ``TEST.HOLDOUT_REFIT``: ``[E]`` the epochs of each eye's refit."""

    def fit(self, eyes: list[Eye], progress: bool = True) -> Tensor:
        """Codes ``[E, L]`` (on the CPU) for ``eyes``, each given by its input B-scans only."""
        codes = torch.zeros(len(eyes), self.network.inputs.latent_size)
        self.network.eval()
        self.network.requires_grad_(False)
        try:
            for batch in tqdm(
                shape_batches(eyes, self.config.TEST.NUM_SAMPLES),
                desc="latent fit",
                unit="batch",
                disable=not progress,
                leave=False,
            ):
                codes[batch] = self._fit_batch([eyes[i] for i in batch]).cpu()
        finally:
            self.network.requires_grad_(True)
        return codes

    def _objective_for(self, steps: int) -> Callable[..., Tensor]:
        """The loss, compiled once (and reused for every batch) when ``steps`` make it worthwhile."""
        if self.compiled is None and self.config.compile_for(steps):
            self.compiled = maybe_compile(self.objective, True)
        return self.compiled if self.compiled is not None else self.objective

    def _fit_batch(self, eyes: list[Eye]) -> Tensor:
        test = self.config.TEST
        data = SparseVolumes.from_eyes(
            eyes,
            use_labels=False,
            use_slo=self.network.inputs.use_slo,
            slice_scale=self.config.PREPROCESSING.SLICE_COORD_SCALE,
            device=self.device,
        )
        fitted, heldout = split_holdout(data, test.HOLDOUT_BSCANS, "TEST.HOLDOUT_BSCANS")
        initial = (
            torch.randn(len(eyes), self.network.inputs.latent_size, device=self.device) * test.LATENT_CODE.INIT_STD
        )
        what = f"latent fit of {', '.join(eye.eye_id for eye in eyes)}"
        codes, epochs, losses, heldout_losses = self._optimise(
            fitted, initial, heldout, test.TOTAL_EPOCHS, None, what, self.generator
        )
        self.epoch_losses.append(losses)
        if heldout_losses is not None:
            self.heldout_losses.append(heldout_losses)
            if test.HOLDOUT_REFIT:
                chosen = (heldout_losses.argmin(0) + 1) if test.KEEP == "best" else torch.full((len(eyes),), epochs)
                self.chosen_epochs.append(chosen)
                fresh = torch.Generator(device=self.device).manual_seed(self.config.TRAINING.SEED)
                codes = self._optimise(
                    data,
                    initial,
                    None,
                    int(chosen.max()),
                    chosen.to(self.device),
                    f"{what} (refit on all inputs)",
                    fresh,
                )[0]
        self.epochs_run.append(epochs)
        return codes

    def _optimise(
        self,
        data: TrainingVolumes,
        initial: Tensor,
        heldout: TrainingVolumes | None,
        epochs: int,
        take_at: Tensor | None,
        what: str,
        generator: torch.Generator,
    ) -> tuple[Tensor, int, Tensor, Tensor | None]:
        """Fit the codes of the eyes of ``data`` from ``initial [E, L]`` for at most ``epochs`` epochs.

        Returns the codes ``[E, L]`` (each eye's code after epoch ``take_at [E]`` when given, else
        by ``TEST.KEEP``: the lowest-loss epoch's, by the held-out loss with ``heldout``), the
        epochs run, and on the CPU the per-epoch mean loss of every eye ``[epochs, E]`` and its
        held-out loss ``[epochs, E]`` (``None`` without ``heldout``). ``generator`` draws the
        B-scan order (a refit draws from a freshly seeded one: the order of a plain fit).
        """
        test = self.config.TEST
        codes = nn.Parameter(initial.clone())
        optimizer = torch.optim.Adam([codes], lr=test.LEARNING_RATE)
        plan = StepPlan.from_config(
            data,
            test.SAMPLING,
            test.BATCH_POINTS,
            self.config.patch_size,
            test.STEPS_PER_EPOCH,
            self.config.micro_batch_points(self.device, test.SAMPLING),
            every_eye=True,
        )
        total_steps = test.TOTAL_EPOCHS * plan.steps_per_epoch
        schedule = Schedule.make(optimizer, test.LR_SCHEDULE, test.LR_GAMMA, test.LR_MIN_FACTOR, total_steps)
        source = BatchSource(data, plan, generator)
        per_eye = StepLosses.zeros(data.num_eyes, self.device)
        mixed_precision = self.config.TRAINING.MIXED_PRECISION
        step = make_step(
            self.objective,
            source,
            codes,
            optimizer,
            schedule.per_step,
            mixed_precision,
            sum_over_images=test.SAMPLING == "bscan",
            per_eye=per_eye,
            compiled_objective=self._objective_for(total_steps),
        )
        best_loss = torch.full((data.num_eyes,), math.inf, device=self.device)
        best_codes = codes.detach().clone()
        history, heldout_history = [], []
        running = torch.zeros(3, device=self.device)
        previous = math.inf
        epoch = 0
        for epoch in range(1, epochs + 1):
            source.start_epoch()
            step_terms = torch.stack([step() for _ in range(plan.steps_per_epoch)])
            check_finite(
                step_terms,
                [codes],
                what,
                epoch,
                "TEST.LEARNING_RATE",
                test.LEARNING_RATE,
                "the network is unchanged (only codes are fitted)",
            )
            running += step_terms.sum(0)
            schedule.end_epoch()
            means = per_eye.take_means()
            history.append(means)
            if heldout is not None:
                means = heldout_losses(
                    self.objective,
                    heldout,
                    codes.detach(),
                    mixed_precision,
                    self.config.micro_batch_points(self.device),
                )
                heldout_history.append(means)
            if take_at is not None:
                best_codes = torch.where((take_at == epoch)[:, None], codes.detach(), best_codes)
            else:
                improved = means < best_loss  # NaN (an eye without patches this epoch) never improves
                best_loss = torch.where(improved, means, best_loss)
                best_codes = torch.where(improved[:, None], codes.detach(), best_codes)
            if epoch % test.EPOCHS_TIL_SUMMARY == 0 and test.CONVERGENCE_TOL > 0 and take_at is None:
                loss = running[0].item()
                running.zero_()
                if previous - loss < test.CONVERGENCE_TOL * previous:
                    break
                previous = loss
        codes_kept = best_codes if take_at is not None or test.KEEP == "best" else codes.detach()
        return (
            codes_kept,
            epoch,
            torch.stack(history).cpu(),
            torch.stack(heldout_history).cpu() if heldout_history else None,
        )

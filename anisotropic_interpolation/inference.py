"""Dense prediction of an eye at any set of B-scan positions, chunked to a memory budget.

Points are enumerated B-scan by B-scan (``[n, H, W]`` order) and evaluated in chunks
whose size follows from the memory budget and the network's width, so a full
496 x 512 x 512 volume is predicted in bounded memory. Coordinates are made per chunk;
nothing of size ``n H W x hidden`` ever exists. On the CPU chunks are also capped at
8,192 points, whose activations stay in the cache (about twice the speed of 100,000-point
chunks here). Large predictions compile the network (``torch.compile``, chunks of one
fixed size), which pays for its one-off compilation from about 16 million points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from anisotropic_interpolation.config import CPU_MICRO_BATCH_POINTS, ExperimentConfig
from anisotropic_interpolation.model import ImplicitNetwork
from anisotropic_interpolation.model.encodings import HashGridEncoding
from anisotropic_interpolation.sampling import axis_coordinates, slice_coordinates
from anisotropic_interpolation.training import autocast_context
from retina_data.errors import DataError
from retina_data.eye import Eye

FLOAT_BYTES = 4
COMPILE_MIN_POINTS = 16_000_000


@dataclass
class DensePrediction:
    """Prediction at ``positions_mm``.

    Attributes:
        intensity: ``[H, W, n]`` float32 in ``[0, 1]``.
        labels: ``[H, W, n]`` uint8 (argmax class) or ``None`` without a segmentation head.
        probabilities: ``[H, W, n, C]`` float16 class probabilities, when asked for.
        positions_mm: ``[n]`` slow-axis positions of the predicted B-scans.
    """

    intensity: np.ndarray
    labels: np.ndarray | None
    probabilities: np.ndarray | None
    positions_mm: np.ndarray


def densified_positions(input_positions_mm: np.ndarray, factor: int) -> np.ndarray:
    """``factor - 1`` evenly spaced positions inserted in every gap: ``(n - 1) factor + 1`` values."""
    positions = np.asarray(input_positions_mm, dtype=np.float64)
    if factor < 1:
        raise DataError(f"densification factor must be >= 1, got {factor}")
    if positions.size < 2:
        return positions.copy()
    steps = np.arange(factor) / factor
    inner = (positions[:-1, None] + np.diff(positions)[:, None] * steps[None, :]).reshape(-1)
    return np.concatenate([inner, positions[-1:]])


def bytes_per_point(network: ImplicitNetwork) -> int:
    """Rough working memory of one point in an inference forward pass."""
    backbone = network.backbone
    hidden = backbone.shape.hidden_size
    encoding = backbone.encoding
    width = hidden * backbone.activation.linear_maps  # pre-activations of a layer
    floats = encoding.out_dim + width * (backbone.input_layers + 4) + 3 * (1 + network.inputs.num_classes) + 8
    if backbone.film is not None:
        floats += 2 * hidden * backbone.modulated_layers
    total = floats * FLOAT_BYTES
    if isinstance(encoding, HashGridEncoding):
        corners = encoding.corners.shape[0]
        total += encoding.n_levels * corners * (8 * (2 * encoding.in_dim + 2) + FLOAT_BYTES * (encoding.n_features + 2))
    return total


def chunk_points(
    network: ImplicitNetwork, device: torch.device, memory_budget_mb: float, max_chunk_points: int | None
) -> int:
    """Points per chunk: within the memory budget and at most ``max_chunk_points``
    (``None``: :data:`CPU_MICRO_BATCH_POINTS` on the CPU, no further cap elsewhere)."""
    chunk = max(1, int(memory_budget_mb * 2**20) // bytes_per_point(network))
    if max_chunk_points is None and device.type == "cpu":
        max_chunk_points = CPU_MICRO_BATCH_POINTS
    return chunk if max_chunk_points is None else max(1, min(chunk, max_chunk_points))


def prediction_settings(config: ExperimentConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`predict_volume` that a run's config decides."""
    return {
        "memory_budget_mb": config.EVALUATION.MEMORY_BUDGET_MB,
        "slice_scale": config.PREPROCESSING.SLICE_COORD_SCALE,
        "compile_network": config.SETTINGS.COMPILE,
        "mixed_precision": config.TRAINING.MIXED_PRECISION,
    }


@torch.no_grad()
def predict_volume(
    network: ImplicitNetwork,
    code: Tensor | None,
    eye: Eye,
    positions_mm: np.ndarray,
    *,
    device: torch.device,
    memory_budget_mb: float = 512.0,
    slice_scale: float = 1.0,
    probabilities: bool = False,
    progress: bool = False,
    max_chunk_points: int | None = None,
    compile_network: bool | None = False,
    mixed_precision: bool = True,
) -> DensePrediction:
    """Predict ``eye`` (its input B-scans define the frame) at ``positions_mm``.

    Args:
        network: the trained network.
        code: ``[L]`` latent code of the eye (``None`` for a single-subject network).
        eye: the eye as the network saw it (its input B-scans); gives H, W, the slow-axis
            frame and the SLO.
        positions_mm: ``[n]`` slow-axis positions to predict (any, in mm).
        memory_budget_mb: working memory of one chunk.
        slice_scale: ``SLICE_COORD_SCALE`` of the run.
        probabilities: also return the class probabilities (float16).
        max_chunk_points: cap on the points of one chunk (``None``: 8,192 on the CPU).
        compile_network: ``torch.compile`` the network for this prediction; ``None``: only
            from :data:`COMPILE_MIN_POINTS` points on (``SETTINGS.COMPILE`` passes through).
        mixed_precision: evaluate in bf16 where the device supports it
            (``TRAINING.MIXED_PRECISION``; see :func:`~anisotropic_interpolation.training.mixed_precision_dtype`).
    """
    network.eval()
    positions = np.asarray(positions_mm, dtype=np.float64)
    height, width, _ = eye.shape
    count = positions.size
    plane = height * width
    total = count * plane
    rows, columns = axis_coordinates(height, device), axis_coordinates(width, device)
    slices = torch.as_tensor(slice_coordinates(positions, eye.bscan_positions, slice_scale), device=device)
    slo = torch.as_tensor(eye.slo_at(positions), device=device) if network.inputs.use_slo else None
    codes = code.to(device)[None] if code is not None else None
    classes = network.inputs.num_classes
    intensity = np.empty(total, dtype=np.float32)
    labels = np.empty(total, dtype=np.uint8) if classes else None
    probs = np.empty((total, classes), dtype=np.float16) if classes and probabilities else None
    chunk = min(total, chunk_points(network, device, memory_budget_mb, max_chunk_points))
    if compile_network is None:
        compile_network = total >= COMPILE_MIN_POINTS
    # A compiled network sees one chunk shape only: the last chunk is padded (its extra points
    # repeat the last one and are dropped).
    run = torch.compile(network, dynamic=False) if compile_network else network
    for start in tqdm(range(0, total, chunk), desc="dense prediction", unit="chunk", disable=not progress, leave=False):
        stop = min(start + chunk, total)
        index = torch.arange(start, start + chunk if compile_network else stop, device=device).clamp_(max=total - 1)
        bscan, within = index // plane, index % plane
        row, column = within // width, within % width
        coords = torch.stack([rows[row], columns[column], slices[bscan]], dim=-1)
        extra = slo[column, bscan][:, None] if slo is not None else None
        eye_index = torch.zeros_like(index) if codes is not None else None
        with autocast_context(device, mixed_precision):
            logit, class_logits = run(coords, extra, codes, eye_index)
        valid = stop - start
        intensity[start:stop] = torch.sigmoid(logit[:valid].float()).cpu().numpy()
        if class_logits is not None and labels is not None:
            class_logits = class_logits[:valid]
            labels[start:stop] = class_logits.argmax(-1).to(torch.uint8).cpu().numpy()
            if probs is not None:
                probs[start:stop] = torch.softmax(class_logits.float(), -1).half().cpu().numpy()

    def volume(flat: np.ndarray) -> np.ndarray:
        shaped = flat.reshape(count, height, width, *flat.shape[1:])
        return np.ascontiguousarray(np.moveaxis(shaped, 0, 2))

    return DensePrediction(
        volume(intensity),
        None if labels is None else volume(labels),
        None if probs is None else volume(probs),
        positions,
    )

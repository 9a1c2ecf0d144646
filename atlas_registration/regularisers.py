"""Smoothness priors of a displacement field ``u(x)``, computed with autograd at sampled points.

As in IDIR, the derivatives are taken analytically through the network (not by finite
differences) at a random subset of the patch's coordinates.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def displacement_jacobian(
    displacement_fn: Callable[[torch.Tensor], torch.Tensor], coords: torch.Tensor
) -> torch.Tensor:
    """``grad u [B, N, 3, 3]`` (``[..., i, j] = d u_i / d x_j``) at ``coords [B, N, 3]``.

    The graph is kept, so a loss built on it trains the network; gradients are enabled
    here, so it also works inside ``torch.no_grad`` (e.g. to report the term).
    """
    with torch.enable_grad():
        coords = coords.detach().requires_grad_(True)
        disp = displacement_fn(coords)
        rows = [torch.autograd.grad(disp[..., i].sum(), coords, create_graph=True)[0] for i in range(disp.shape[-1])]
        return torch.stack(rows, dim=-2)


def jacobian_penalty(grad_u: torch.Tensor) -> torch.Tensor:
    """Mean ``|1 - det(I + grad u)|`` (IDIR's Jacobian regulariser) of ``grad_u [..., 3, 3]``, in fp32
    (in bf16, ``1 + du/dx`` would round the small derivatives away)."""
    eye = torch.eye(3, dtype=torch.float32, device=grad_u.device)
    return (1.0 - torch.linalg.det(grad_u.float() + eye)).abs().mean()


def gradient_penalty(grad_u: torch.Tensor) -> torch.Tensor:
    """Mean squared Frobenius norm ``|grad u|^2`` (diffusion regulariser) of ``grad_u [..., 3, 3]``."""
    return grad_u.float().pow(2).sum(dim=(-2, -1)).mean()


PENALTIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "jacobian": jacobian_penalty,
    "gradient": gradient_penalty,
}


def regularisation(
    displacement_fn: Callable[[torch.Tensor], torch.Tensor], coords: torch.Tensor, kind: str, num_points: int
) -> torch.Tensor:
    """The ``kind`` penalty at ``num_points`` random points of ``coords [B, N, 3]``."""
    count = min(num_points, coords.shape[1])
    index = torch.randperm(coords.shape[1], device=coords.device)[:count]
    return PENALTIES[kind](displacement_jacobian(displacement_fn, coords[:, index]))

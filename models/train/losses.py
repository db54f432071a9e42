"""Retrieval losses over user vectors and item vectors.

Shapes: ``query`` float32 (n, d) (one row per training position), item vectors
float32 (m, d). Targets are row indices into the candidate matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sampled_softmax_loss(
    query: torch.Tensor, candidates: torch.Tensor, target: torch.Tensor, log_q: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean softmax cross-entropy of ``query @ candidates.T - log_q`` against ``target`` (n,) int64.

    ``log_q`` float32 (m,): log probability that each candidate is in the sampled
    set. Subtracting it (logQ correction, Yi et al. 2019) keeps popular items,
    which appear as negatives more often, from being pushed down too hard.
    """
    logits = query @ candidates.T
    if log_q is not None:
        logits = logits - log_q.unsqueeze(0)
    return F.cross_entropy(logits, target)


def in_batch_log_q(item_prob: torch.Tensor, n_draws: int) -> torch.Tensor:
    """log P(item among ``n_draws`` draws) = log(1 - (1 - p)^n) for p float (m,), clamped away from -inf."""
    p = item_prob.clamp(1e-12, 1 - 1e-7)
    return torch.log(-torch.expm1(n_draws * torch.log1p(-p))).clamp_min(-30.0)


def full_softmax_loss(query: torch.Tensor, all_items: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every item: all_items (n_items, d), target item indices (n,) int64."""
    return F.cross_entropy(query @ all_items.T, target)


def bce_loss(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: positive (n, d) labelled 1, negatives (n, k, d) labelled 0; mean over all n*(1+k) pairs."""
    pos = (query * positive).sum(-1)
    neg = torch.einsum("nd,nkd->nk", query, negatives)
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(logits, labels)

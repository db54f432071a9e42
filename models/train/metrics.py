"""Full-ranking HR@k / NDCG@k used for early stopping (train items excluded)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def rank_metrics(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    targets: np.ndarray,
    exclude: sp.csr_matrix | None = None,
    k: int = 10,
    batch_size: int = 1024,
) -> dict[str, float]:
    """HR@k and NDCG@k of one held-out item per row, ranking every item.

    ``user_vectors`` float32 (n, d), ``item_vectors`` float32 (m, d), ``targets``
    int64 (n,) item indices; ``exclude`` (n, m) CSR of items to drop from the
    ranking (the user's training items; the target itself is never dropped).
    Ties count against the target (its rank is the number of items scoring >= it, minus itself).
    """
    n = len(targets)
    if n == 0:
        return {f"hr@{k}": 0.0, f"ndcg@{k}": 0.0, "n": 0}
    hits = np.zeros(n, dtype=np.float64)
    gains = np.zeros(n, dtype=np.float64)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        scores = user_vectors[start:stop] @ item_vectors.T
        rows = np.arange(stop - start)
        tgt = targets[start:stop]
        target_score = scores[rows, tgt].copy()
        if exclude is not None:
            block = exclude[start:stop].tocoo()
            scores[block.row, block.col] = -np.inf
        scores[rows, tgt] = -np.inf
        rank = (scores >= target_score[:, None]).sum(1)
        hit = rank < k
        hits[start:stop] = hit
        gains[start:stop] = np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)
    return {f"hr@{k}": float(hits.mean()), f"ndcg@{k}": float(gains.mean()), "n": int(n)}

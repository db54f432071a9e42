"""Full-ranking HR@k / NDCG@k used for early stopping (train items excluded).

The ranking is done here; the metrics themselves are :mod:`models.evaluate.metrics`'
(the same NDCG the evaluation reports), fed a one-relevant-item hit matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.evaluate.metrics import hit_rate, ndcg


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
    ranks = np.empty(n, dtype=np.int64)
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
        ranks[start:stop] = (scores >= target_score[:, None]).sum(1)
    # hits[u, r]: the target sits at rank r of the top k (at most one True per row).
    hits = ranks[:, None] == np.arange(k)
    one = np.ones(n, dtype=np.int64)
    return {f"hr@{k}": float(hit_rate(hits, k).mean()), f"ndcg@{k}": float(ndcg(hits, one, k).mean()), "n": int(n)}

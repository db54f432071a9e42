"""Seeded synthetic vectors shaped like learned embeddings, for tests and benches.

Uniform random vectors are a worst case no real catalogue has: learned item and
user embeddings cluster and have a low intrinsic dimension. The generator here
draws ``n_clusters`` Gaussian centres in a ``latent_dim``-dimensional latent
space, scatters points around them, maps them to ``dim`` through one random
linear map, adds isotropic noise and L2-normalises the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EmbeddingWorld", "uniform_sphere"]


@dataclass(frozen=True)
class EmbeddingWorld:
    """A fixed generator: the same ``seed`` gives the same centres and map.

    Attributes:
        dim: output dimension ``d``.
        latent_dim: intrinsic dimension of the cluster structure.
        n_clusters: number of Gaussian cluster centres in the latent space.
        cluster_std: spread of points around their centre (centres have std 1).
            At 0.7 neighbouring clusters overlap, as categories of a real
            catalogue do; at 0.35 every index reaches recall 0.99 trivially.
        noise_std: isotropic noise added in the output space before normalising.
        seed: seed of the centres and the linear map.
    """

    dim: int = 64
    latent_dim: int = 16
    n_clusters: int = 300
    cluster_std: float = 0.7
    noise_std: float = 0.05
    seed: int = 0

    def sample(self, n: int, *, seed: int) -> np.ndarray:
        """Draw ``n`` unit vectors, float32 of shape (n, dim), C-contiguous.

        ``seed`` picks the points (item vectors, queries, users) within this
        world; draw queries with a seed other than the catalogue's.
        """
        world = np.random.default_rng(self.seed)
        centres = world.standard_normal((self.n_clusters, self.latent_dim))
        mapping = world.standard_normal((self.latent_dim, self.dim)) / np.sqrt(self.latent_dim)
        rng = np.random.default_rng([self.seed, seed])
        out = np.empty((n, self.dim), dtype=np.float32)
        # Chunked so that a million points never needs float64 copies of everything.
        for start in range(0, n, 65_536):
            m = min(65_536, n - start)
            which = rng.integers(0, self.n_clusters, size=m)
            latent = centres[which] + self.cluster_std * rng.standard_normal((m, self.latent_dim))
            x = latent @ mapping + self.noise_std * rng.standard_normal((m, self.dim))
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[start : start + m] = x
        return out


def uniform_sphere(n: int, dim: int, *, seed: int) -> np.ndarray:
    """Draw ``n`` points uniformly on the unit sphere: float32 of shape (n, dim)."""
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x

"""Training one split on several processes with DistributedDataParallel, each on a disjoint shard of its users.

:func:`train_across_processes` is :func:`models.train.loop.train_two_tower` on
``nproc`` local processes: users are hashed to ranks (CRC-32 of the user id, so
a user's rank does not depend on the run), each rank trains on its users'
windows only (``fit_sequences(..., sharded=True)``), DDP averages the gradients,
and rank 0 hands the weights back. gloo on CPU, NCCL when every rank has a GPU.
Each rank is a ``python -m models.train.sharded`` process of its own; the shards,
the validation set and the content features reach them as files in a temporary
folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from models.data.dataset import Split
from models.features.content import dense_features, fit_featurizer
from models.towers.model import TwoTower
from models.train.config import TrainConfig
from models.train.loop import TrainedModel, _load_weights, _weights, fit_sequences

log = logging.getLogger(__name__)


def rank_of_users(user_ids: Sequence[str], world: int) -> np.ndarray:
    """int64 (n,): the rank each user trains on (CRC-32 of its id modulo ``world``)."""
    return np.fromiter((zlib.crc32(u.encode("utf-8")) % world for u in user_ids), dtype=np.int64,
                       count=len(user_ids))


def backend_for(config: TrainConfig, nproc: int) -> str:
    """``nccl`` when CUDA is asked for (or ``auto``) and every rank gets a GPU of its own, else ``gloo``."""
    cuda = torch.cuda.is_available() and config.device in ("auto", "cuda") and torch.cuda.device_count() >= nproc
    return "nccl" if cuda else "gloo"


def train_across_processes(split: Split, config: TrainConfig, nproc: int,
                           init: Callable[[TwoTower], Any] | None = None) -> TrainedModel:
    """Train on ``split.train`` across ``nproc`` processes, stop early on ``split.valid``; as
    ``train_two_tower`` returns it (``metrics["world_size"] == nproc``, ``metrics["sharded"]``)."""
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    train, valid = split.train, split.valid
    featurizer = fit_featurizer(split.catalog, config.content, seed=config.seed)
    content = dense_features(featurizer, split.catalog.documents()) if featurizer is not None else None
    sequences = train.sequences()
    ranks = rank_of_users(train.users.ids, nproc)
    n_features = 0 if content is None else int(content.shape[1])
    with tempfile.TemporaryDirectory(prefix="streamrec-ddp-") as tmp:
        folder = Path(tmp)
        for r in range(nproc):
            shard = [s for s, rank in zip(sequences, ranks) if rank == r]
            if not any(len(s) >= 2 for s in shard):  # every rank must step, or DDP's collectives hang
                raise ValueError(f"rank {r} of {nproc} has no user with 2 training events: train on fewer processes")
            _save_sequences(folder / f"shard-{r}.npz", shard)
        exclude = train.matrix(binary=True)[valid.user].tocsr()
        _save_sequences(folder / "valid.npz", [sequences[u] for u in valid.user], targets=valid.item,
                        exclude_data=exclude.data, exclude_indices=exclude.indices, exclude_indptr=exclude.indptr,
                        exclude_shape=np.array(exclude.shape), n_items=np.array([train.n_items]))
        if content is not None:
            np.save(folder / "content.npy", content)
        if init is not None:
            start = TwoTower(config.tower_spec(train.n_items, n_features), content)
            init(start)
            torch.save(start.state_dict(), folder / "init.pt")
        backend = backend_for(config, nproc)
        # Fewer GPUs than ranks: every rank on the CPU, rather than two on one GPU or one on a GPU that is not there.
        on_cpu = backend == "gloo" and config.device == "auto"
        ranks_config = dataclasses.replace(config, device="cpu") if on_cpu else config
        (folder / "config.json").write_text(ranks_config.to_json(), encoding="utf-8")
        _launch(folder, nproc, backend)
        model = TwoTower(config.tower_spec(train.n_items, n_features), content)
        _load_weights(model, torch.load(folder / "weights.pt", weights_only=True))
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    model.eval()
    return TrainedModel(config=config, model=model, users=train.users, items=train.items, histories=sequences,
                        item_embeddings=model.item_vectors(), featurizer=featurizer, metrics=metrics)


def _launch(folder: Path, nproc: int, backend: str) -> None:
    """Run ``python -m models.train.sharded`` once per rank and wait for all; the first to fail stops the rest.

    Processes of their own (as torchrun starts them), not multiprocessing's spawn, which
    would run the caller's ``__main__`` again in each rank.
    """
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(nproc),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                          *filter(None, [os.environ.get("PYTHONPATH")])])}
    procs: list[subprocess.Popen] = []
    try:
        for rank in range(nproc):
            # Rank 0 keeps the caller's stderr (its progress bars); the others log to the folder.
            out = None if rank == 0 else open(folder / f"rank-{rank}.log", "wb")
            procs.append(subprocess.Popen([sys.executable, "-m", "models.train.sharded", str(folder), backend],
                                          env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                                          stdout=out, stderr=out))
            if out is not None:
                out.close()
        while True:
            codes = [p.poll() for p in procs]
            failed = [r for r, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                rank = failed[0]
                log_file = folder / f"rank-{rank}.log"
                tail = log_file.read_text(errors="replace")[-3000:] if log_file.exists() else "(its stderr above)"
                raise RuntimeError(f"training rank {rank} of {nproc} exited with {codes[rank]}: {tail}")
            if all(code == 0 for code in codes):
                return
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(30)


def _rank_main(folder: str, backend: str) -> None:
    """One process (``RANK``, ``WORLD_SIZE``, ``MASTER_*`` from the environment): join the group, train on
    this rank's shard; rank 0 writes the weights and metrics."""
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    path = Path(folder)
    config = TrainConfig.from_json((path / "config.json").read_text(encoding="utf-8"))
    if config.num_threads is None:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # the processes share the cores
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    try:
        shard = _load_sequences(path / f"shard-{rank}.npz")
        with np.load(path / "valid.npz") as v:
            valid_histories = _split_concat(v["items"], v["lengths"])
            exclude = sp.csr_matrix((v["exclude_data"], v["exclude_indices"], v["exclude_indptr"]),
                                    shape=tuple(v["exclude_shape"]))
            targets, n_items = v["targets"], int(v["n_items"][0])
        content = np.load(path / "content.npy") if (path / "content.npy").exists() else None
        init = None
        if (path / "init.pt").exists():
            weights = torch.load(path / "init.pt", weights_only=True)
            init = lambda m: m.load_state_dict(weights)  # noqa: E731
        trained = fit_sequences(shard, n_items=n_items, valid_histories=valid_histories, valid_targets=targets,
                                valid_exclude=exclude, content=content, config=config, init=init, sharded=True)
        if rank == 0:
            torch.save({k: v.cpu() for k, v in _weights(trained.model).items()}, path / "weights.pt")
            (path / "metrics.json").write_text(json.dumps(trained.metrics), encoding="utf-8")
        if not trained.metrics.get("ranks_in_sync", True):
            raise RuntimeError("DDP ranks ended with different weights")
    finally:
        dist.destroy_process_group()


def _save_sequences(path: Path, sequences: list[np.ndarray], **extra: np.ndarray) -> None:
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    items = np.concatenate(sequences).astype(np.int64) if sequences else np.zeros(0, dtype=np.int64)
    np.savez(path, items=items, lengths=lengths, **extra)


def _load_sequences(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return _split_concat(data["items"], data["lengths"])


def _split_concat(items: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(items, np.cumsum(lengths)[:-1]) if len(lengths) else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    _rank_main(sys.argv[1], sys.argv[2])

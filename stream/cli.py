"""The ``streamrec`` command: Faust's CLI (``worker``, ``agents``, ...) plus the project's commands.

``streamrec --help`` lists every command; each has ``--help``. The commands
themselves are thin: they parse options and call typed functions that tests
call directly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

from stream.errors import ConfigError

# Thread pools of the numeric libraries a worker loads (NumPy's and FAISS' OpenBLAS, two
# OpenMP runtimes). Read when each library loads, so set before any is imported; idle
# BLAS threads spin, and on 2 cores they took a core from the broker and the clients.
WORKER_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# Faust's own commands that read the worker's agents and table from the app (``reset`` deletes
# the table's local state): they get the worker registered, without the worker's start-up.
TOPOLOGY_COMMANDS = frozenset({"agents", "tables", "reset", "send"})


def limit_worker_threads(argv: list[str], environ: MutableMapping[str, str]) -> None:
    """For the ``worker`` command, default the thread pools' variables to one thread
    (an explicit setting wins)."""
    if len(argv) > 1 and argv[1] == "worker":
        for name, value in WORKER_THREAD_ENV.items():
            environ.setdefault(name, value)


def main() -> None:
    """Entry point of the ``streamrec`` console script."""
    is_worker = len(sys.argv) > 1 and sys.argv[1] == "worker"
    limit_worker_threads(sys.argv, os.environ)
    try:
        from stream.runtime.app import app, prepare_worker, register_worker
        from stream.settings import get_settings

        # Faust's names for the levels.
        level = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error"}[get_settings().log_level]
        if is_worker:  # only the worker command patches Faust, limits threads and checks versions
            prepare_worker(app)
        elif len(sys.argv) > 1 and sys.argv[1] in TOPOLOGY_COMMANDS:
            register_worker(app)
    except ConfigError as e:  # UnsupportedRuntime included: other Faust, mode or aiokafka releases
        print(f"streamrec: {e}", file=sys.stderr)
        sys.exit(2)
    # Faust configures logging from --loglevel; STREAMREC_LOG_LEVEL is its default.
    if is_worker and not {"-l", "--loglevel"} & set(sys.argv):
        sys.argv += ["--loglevel", level]
    import stream.runtime.commands  # noqa: F401  (registers the project's commands on Faust's CLI)

    app.main()


if __name__ == "__main__":
    main()

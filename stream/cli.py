"""The ``streamrec`` command: Faust's CLI (``worker``, ``agents``, ...) plus the project's commands.

``streamrec --help`` lists every command; each has ``--help``. The commands
themselves are thin: they parse options and call typed functions that tests
call directly.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
import urllib.parse
from collections.abc import Iterable, MutableMapping

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


MASK = "**********"


def secret_renderings(secrets: Iterable[str]) -> tuple[str, ...]:
    """Each secret as a log line may show it: as is, inside a ``repr`` of a str or of its UTF-8
    bytes (kafka-python logs its SASL/PLAIN request, ``auth_bytes=b'user\\x00user\\x00password'``),
    JSON-escaped, URL-quoted; longest first, so a longer rendering is masked whole."""
    out: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        out |= {secret, repr(secret)[1:-1], repr(secret.encode("utf-8", "surrogateescape"))[2:-1],
                json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
                urllib.parse.quote(secret, safe="")}
    return tuple(sorted(out, key=len, reverse=True))


def mask(text: str, renderings: tuple[str, ...]) -> str:
    for rendering in renderings:
        text = text.replace(rendering, MASK)
    return text


def mask_secrets_in_logs(secrets: Iterable[str]) -> None:
    """Mask ``secrets`` in every log record the process creates from now on, at any level.

    A record factory rather than a handler filter, because Faust sets up its own handlers
    later and every library's logger passes through the factory: kafka-python's admin client
    logs its whole configuration (SASL password included) at DEBUG, and kafka-python's and
    aiokafka's connections (the worker's, through Faust) every request they send, the SASL/PLAIN
    one with the password in it. A record that shows a
    secret, in its message, its traceback or its stack, is rewritten with the secret masked
    (its traceback folded into the message); others are left as they are.
    """
    renderings = secret_renderings(secrets)
    if not renderings:
        return
    make_record = logging.getLogRecordFactory()

    def masked_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  (logging would print msg and args to stderr: print neither)
            message = f"unformattable log message {record.msg!r}"
            record.msg, record.args = message, ()
        if any(r in message for r in renderings):
            record.msg, record.args = mask(message, renderings), ()
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info))
            if any(r in text for r in renderings):
                record.msg = f"{record.getMessage()}\n{mask(text.rstrip(), renderings)}"
                record.args, record.exc_info, record.exc_text = (), None, None
        if record.stack_info and any(r in record.stack_info for r in renderings):
            record.stack_info = mask(record.stack_info, renderings)
        return record

    logging.setLogRecordFactory(masked_record)


def main() -> None:
    """Entry point of the ``streamrec`` console script."""
    is_worker = len(sys.argv) > 1 and sys.argv[1] == "worker"
    limit_worker_threads(sys.argv, os.environ)
    try:
        from stream.settings import get_settings

        settings = get_settings()
        # Before anything builds a client or a log handler (the app module builds the Faust app).
        mask_secrets_in_logs(settings.secret_values())
        from stream.runtime.app import app, prepare_worker, register_worker

        # Faust's names for the levels.
        level = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error"}[settings.log_level]
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

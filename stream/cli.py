"""The ``streamrec`` command: Faust's CLI (``worker``, ``agents``, ...) plus the project's commands.

``streamrec --help`` lists every command; each has ``--help``. The commands
themselves are thin: they parse options and call typed functions that tests
call directly.
"""

from __future__ import annotations

import sys

from stream.errors import ConfigError


def main() -> None:
    """Entry point of the ``streamrec`` console script."""
    try:
        from stream.app import app
    except ConfigError as e:
        print(f"streamrec: {e}", file=sys.stderr)
        sys.exit(2)
    import stream.commands  # noqa: F401  (registers the project's commands on Faust's CLI)

    app.main()


if __name__ == "__main__":
    main()

"""One JSON Schema per topic, generated from the record definitions in ``stream.core``.

``docs/schemas/<topic>.schema.json`` are the files subscribers in other
languages read; a test fails when they are stale. Regenerate them with::

    python -m stream.core.schemas            # writes docs/schemas/
    python -m stream.core.schemas --check    # exit 1 when a file differs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stream.core import announcements, dead_letters, events, experiments, items, recommendations, trending
from stream.core.topics import DEAD_LETTER, EVENTS, ITEMS, MODEL_UPDATES, RECOMMENDATIONS, TRENDING

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://streamrec.dev/schemas/"
DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "docs" / "schemas"
TOPIC_SCHEMAS: dict[str, dict[str, Any]] = {
    EVENTS: events.JSON_SCHEMA,
    ITEMS: items.JSON_SCHEMA,
    RECOMMENDATIONS: recommendations.JSON_SCHEMA,
    DEAD_LETTER: dead_letters.JSON_SCHEMA,
    MODEL_UPDATES: {
        "title": "streamrec model-updates record",
        "description": "A trained version's announcement, or (with an experiment object) an experiment record.",
        "if": {"type": "object", "required": ["experiment"]},
        "then": experiments.EXPERIMENT_SCHEMA,
        "else": announcements.JSON_SCHEMA,
        "x-max-bytes": announcements.MAX_ANNOUNCEMENT_BYTES,
    },
    TRENDING: trending.JSON_SCHEMA,
}


def schema_documents() -> dict[str, str]:
    """``{file name: JSON text}`` of every topic's schema, as written to ``docs/schemas``."""
    out = {}
    for topic, schema in TOPIC_SCHEMAS.items():
        name = f"{topic}.schema.json"
        document = {"$schema": DRAFT, "$id": BASE_ID + name, "x-topic": topic, **schema}
        out[name] = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return out


def stale(folder: Path = DEFAULT_FOLDER) -> list[str]:
    """File names in ``folder`` that are missing or differ from :func:`schema_documents`."""
    return [name for name, text in schema_documents().items()
            if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text]


def write(folder: Path = DEFAULT_FOLDER) -> list[Path]:
    """Write every schema into ``folder``; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in schema_documents().items():
        (folder / name).write_text(text, encoding="utf-8")
        paths.append(folder / name)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.core.schemas", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_FOLDER, help="folder of the schema files "
                        "(default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale(args.out)
        for name in bad:
            print(f"stale: {args.out / name}", file=sys.stderr)
        return 1 if bad else 0
    for path in write(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

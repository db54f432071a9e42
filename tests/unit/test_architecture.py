"""The rooms' import rules (README, "Architecture"): who may import whom, checked on every .py file.

``RULES`` is the one statement of the rules; the README's table mirrors it. The
source test walks every module's syntax tree (imports inside functions
included), so a lazy import cannot slip past; the subprocess test checks what
importing the pure rooms really loads, transitive imports included.
"""

from __future__ import annotations

import ast
import importlib.machinery
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("stream", "models", "index", "bench", "tests")

# "aiokafka." is every module below aiokafka except these, the public API the
# kafka room uses: the rest (aiokafka.conn, aiokafka.producer.message_accumulator,
# ...) are internals that a patch release may change, so only stream/runtime,
# where each private name is listed and checked against the pinned release, may
# import them. A documented public module (aiokafka.abc, aiokafka.helpers) may be
# added here when the kafka room needs it.
PUBLIC_AIOKAFKA = ("aiokafka.errors", "aiokafka.structs", "aiokafka.admin")
OUTSIDE_RUNTIME = ("faust", "mode", "aiokafka.")
NOT_PRODUCT = ("bench", "tests")  # the product never imports its benchmarks or tests
ROOMS = ("stream.core", "stream.serving", "stream.kafka", "stream.runtime", "stream.trainer", "stream.demo",
         "stream.dashboard")

# Where a file lives (path in the repository; the longest match wins) -> module
# prefixes it must not import. Every .py file must fall in one room.
RULES: dict[str, tuple[str, ...]] = {
    "stream/core/": (*OUTSIDE_RUNTIME, *NOT_PRODUCT, *(r for r in ROOMS if r != "stream.core")),
    "stream/serving/": (*OUTSIDE_RUNTIME, *NOT_PRODUCT, "stream.kafka", "stream.runtime", "stream.trainer",
                        "stream.demo", "stream.dashboard"),
    "stream/kafka/": (*OUTSIDE_RUNTIME, *NOT_PRODUCT, "stream.serving", "stream.runtime", "stream.trainer",
                      "stream.demo", "stream.dashboard"),
    "stream/runtime/": NOT_PRODUCT,
    # The worker learns of a version only from model-updates; the demo runs the worker as a child process.
    "stream/trainer/": (*OUTSIDE_RUNTIME, *NOT_PRODUCT, "stream.serving", "stream.runtime", "stream.demo",
                        "stream.dashboard"),
    "stream/demo/": (*OUTSIDE_RUNTIME, *NOT_PRODUCT, "stream.serving", "stream.runtime", "stream.dashboard"),
    # A process of its own that reads the workers over HTTP and the topics with the public clients.
    "stream/dashboard/": (*OUTSIDE_RUNTIME, *NOT_PRODUCT, "stream.serving", "stream.runtime", "stream.trainer",
                          "stream.demo"),
    # The shared foundation every room imports, so it imports none of them.
    "stream/settings.py": (*OUTSIDE_RUNTIME, *NOT_PRODUCT, *ROOMS, "stream.cli"),
    "stream/errors.py": (*OUTSIDE_RUNTIME, *NOT_PRODUCT, *ROOMS, "stream.cli", "stream.settings"),
    "stream/exposition.py": (*OUTSIDE_RUNTIME, *NOT_PRODUCT, *ROOMS, "stream.cli"),  # /metrics of worker and trainer
    # The entry point reaches Faust only through stream.runtime, when a command runs.
    "stream/cli.py": (*OUTSIDE_RUNTIME, *NOT_PRODUCT),
    "stream/__init__.py": (*OUTSIDE_RUNTIME, *NOT_PRODUCT, *ROOMS),
    "models/": (*OUTSIDE_RUNTIME, *NOT_PRODUCT, "stream", "kafka", "aiokafka"),
    "index/": (*OUTSIDE_RUNTIME, *NOT_PRODUCT, "stream", "models", "kafka", "aiokafka"),  # and test_index_isolation
    # Benchmarks drive workers as child processes (stream.demo.local_worker), never the runtime in-process.
    "bench/": (*OUTSIDE_RUNTIME, "tests", "stream.runtime"),
    # The one exception: the ceiling of Faust's own stream path (an agent that does nothing,
    # bench/stream_throughput.py) must be a Faust app; it imports nothing of stream.runtime.
    "bench/_faust_noop.py": ("aiokafka.", "tests", "stream.runtime"),
    "tests/": (),
}
DYNAMIC_IMPORTS = {"importlib.import_module", "import_module", "__import__"}
NOT_SOURCE = {"var", "build", "dist"}  # top-level output folders (.gitignore); hidden ones (.venv) are skipped too


def python_files() -> list[Path]:
    """Every .py file of the working tree (tracked or not), outside the virtualenv and build output."""
    found = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not (d.startswith(".") or d == "__pycache__" or d.endswith(".egg-info")
                                           or (Path(root) == REPO and d in NOT_SOURCE))]
        found += [Path(root, f) for f in files if f.endswith(".py")]
    return sorted(found)


def room_of(rel: str) -> str | None:
    matches = [r for r in RULES if rel == r or (r.endswith("/") and rel.startswith(r))]
    return max(matches, key=len) if matches else None


@cache
def is_module(dotted: str) -> bool:
    """Whether ``dotted`` names a module or package (found on disk; nothing is imported)."""
    top, *rest = dotted.split(".")
    if top in FIRST_PARTY:
        roots = [REPO / top]
    else:
        # Located on sys.path without importing it, and without sys.modules: faust replaces its own
        # entry there with an object that has no __spec__, and importlib.util.find_spec then raises.
        spec = importlib.machinery.PathFinder.find_spec(top)
        roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    for root in roots:
        path = root.joinpath(*rest)
        if path.is_dir() or any(p.suffix in (".py", ".so", ".pyd") for p in path.parent.glob(path.name + ".*")):
            return True
    return False


def imported_names(source: str, rel: str) -> list[tuple[int, str]]:
    """(line, module) for every import in the source of file ``rel``, relative ones made absolute.

    ``from X import Y`` counts as importing ``X.Y`` too when that is a module, so
    ``from aiokafka import conn`` is seen as ``aiokafka.conn``; so do
    ``importlib.import_module("X")`` and ``__import__("X")`` with a literal name.
    """
    package = Path(rel).with_suffix("").parts[:-1]
    names = []
    for node in ast.walk(ast.parse(source, rel)):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names.append((node.lineno, module))
            names += [(node.lineno, f"{module}.{a.name}") for a in node.names
                      if a.name != "*" and is_module(f"{module}.{a.name}")]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and ast.unparse(node.func) in DYNAMIC_IMPORTS):
            names.append((node.lineno, node.args[0].value))
    return names


def breaks(name: str, prefix: str) -> bool:
    if prefix.endswith("."):
        return name.startswith(prefix) and not any(name == p or name.startswith(p + ".") for p in PUBLIC_AIOKAFKA)
    return name == prefix or name.startswith(prefix + ".")


def violations(source: str, rel: str) -> list[str]:
    """What file ``rel`` imports that its room's rule forbids, one line per import."""
    room = room_of(rel)
    found = []
    for line, name in imported_names(source, rel):
        found += [f"{rel}:{line} imports {name} (room {room} may not import {p!r})"
                  for p in RULES.get(room or "", ()) if breaks(name, p)][:1]
    return found


def test_every_python_file_is_in_a_room() -> None:
    homeless = [str(p.relative_to(REPO)) for p in python_files() if room_of(p.relative_to(REPO).as_posix()) is None]
    assert not homeless, f"add a row to RULES (and the README's table) for: {homeless}"


def test_the_readme_table_has_a_row_per_room() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Architecture"):]
    section = section[:section.index("\n## ", 1)]
    missing = [room for room in RULES if f"`{room}`" not in section]
    assert not missing, f"README's architecture table lacks {missing}"


def test_no_room_imports_what_its_rule_forbids() -> None:
    offenders = [v for path in python_files() for v in violations(path.read_text(), path.relative_to(REPO).as_posix())]
    assert not offenders, "\n".join(offenders)


def test_the_rules_see_lazy_relative_submodule_and_dynamic_imports() -> None:
    """A test of the test: each forbidden import is found wherever and however it is written."""
    source = ("import json\n"
              "def f():\n"
              "    from ..runtime import app\n"
              "    from aiokafka import conn, TopicPartition\n"
              "    import faust.types\n"
              "    importlib.import_module('mode')\n")
    found = violations(source, "stream/core/sample.py")
    assert [v.split(" (")[0] for v in found] == [
        "stream/core/sample.py:3 imports stream.runtime", "stream/core/sample.py:3 imports stream.runtime.app",
        "stream/core/sample.py:4 imports aiokafka.conn", "stream/core/sample.py:5 imports faust.types",
        "stream/core/sample.py:6 imports mode"], found
    assert violations(source, "stream/runtime/sample.py") == [] and violations(source, "tests/unit/sample.py") == []
    assert violations("from tests.helpers import free_port\n", "bench/sample.py")
    assert violations("from stream.settings import Settings\n", "models/sample.py")
    assert not violations("from aiokafka import AIOKafkaConsumer\nfrom aiokafka.errors import KafkaError\n"
                          "import models.feedback\n", "stream/kafka/sample.py")
    assert room_of("stream/serving/model.py") == "stream/serving/" and room_of("stream/new.py") is None


def modules_of(package: str) -> list[str]:
    root = REPO.joinpath(*package.split("."))
    return sorted(".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                  for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_importing_the_rooms_loads_only_what_they_may() -> None:
    """The pure rooms and the shared modules load no Kafka client and no Faust; the kafka and dashboard rooms
    load no Faust.

    (The trainer and the demo are left to the source test: importing the
    trainer loads PyTorch, gensim and scikit-learn, seconds for no added check.)
    """
    stages = [
        (["stream", "stream.settings", "stream.errors", *modules_of("stream.core"), *modules_of("stream.serving")],
         ["faust", "mode", "kafka", "aiokafka"]),
        (modules_of("stream.kafka"), ["faust", "mode"]),
        (modules_of("stream.dashboard"), ["faust", "mode"]),
    ]
    code = (
        "import importlib, json, sys\n"
        f"stages = {stages!r}\n"
        "loaded = []\n"
        "for modules, banned in stages:\n"
        "    for m in modules:\n"
        "        importlib.import_module(m)\n"
        "    loaded.append({m: sorted(n for n in sys.modules if n.split('.')[0] == m) for m in banned})\n"
        "print(json.dumps(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for (modules, _), loaded in zip(stages, json.loads(done.stdout.splitlines()[-1])):
        assert not any(loaded.values()), f"importing {modules} loaded {loaded}"

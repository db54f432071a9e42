"""The fault scenarios: break the system on purpose, then compare what the worker kept with an oracle.

Owns the scenarios as typed functions (``scenarios``), the pieces they share
(``kit``: a namespace, seeded events, a paced producer, a private broker, the
final check), malformed input (``malformed``), the oracle written apart from
``stream/`` (``oracle``) and what they need of this machine (``local``). Both
``bench/chaos.py`` (long forms) and ``tests/chaos`` (short forms) run them, so
they live here: tests may import bench, bench never imports tests.
"""

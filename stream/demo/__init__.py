"""The demo and the local harness: generated history through Kafka, a worker as a child process.

Owns the main job (``streamrec demo``) and :class:`~stream.demo.local_worker.LocalWorker`,
which runs ``streamrec worker`` as a subprocess for the demo, the benchmarks
and the tests. May import ``stream.core``, ``stream.kafka`` and ``stream.trainer``;
never ``stream.runtime`` in-process (the worker runs in its own process), Faust or mode.
"""

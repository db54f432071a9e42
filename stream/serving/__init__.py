"""Serving: a micro-batch of records in, user states and recommendations out, without Kafka.

Owns the batch processor, the served model (item vectors, index, user encoder
of one version, and the one recommendation builder that both the Kafka path and
the HTTP API use) and the similar-users index. Pure computation over NumPy,
PyTorch (through a loaded artifact) and ``index``; may import ``stream.core``,
``models`` and ``index``, never ``stream.kafka``, ``stream.runtime``,
``stream.trainer`` or ``stream.demo``.
"""

"""The HTTP API fuzzed from its own OpenAPI document (schemathesis): every documented operation,
with requests that fit the document and requests that do not, on a real worker behind a token.
No answer may be a 5xx, and every answer must be one the document lists, with its body schema."""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from models.data.synthetic import generate_demo_dataset
from stream.kafka.producer import EventProducer
from tests.worker_harness import start_catalogue_worker, wait_for

pytestmark = pytest.mark.kafka

TOKEN = "fuzz-token-0123456789abcdef"
EXAMPLES = 80  # per operation, path ids and generation mode: some 1,600 requests in all
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def world(kafka_bootstrap, tmp_path_factory):
    data = generate_demo_dataset(n_users=10, n_items=40, events_per_user=3, seed=5)
    settings_, worker = start_catalogue_worker(kafka_bootstrap, tmp_path_factory.mktemp("fuzz"), "itfz", 2,
                                               data.items, api_token=TOKEN)
    with EventProducer(settings_) as producer:
        for n, item in enumerate(data.items[:3]):
            producer.send({"user_id": f"u{n}", "item_id": item["item_id"], "event_type": "play",
                           "timestamp_ms": int(time.time() * 1000), "value": 100.0})
    wait_for(lambda: worker.get("/recommendations/u2")[0] == 200, timeout=60, what="the users applied")
    yield worker, data.items
    worker.stop()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_the_api_fuzzed_from_its_openapi_document_never_answers_5xx(world, mode):
    worker, items = world
    status, document = worker.get("/openapi.json")
    assert status == 200
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(ops) for ops in document["paths"].values())
    auth = {"Authorization": f"Bearer {TOKEN}"}
    calls: list[tuple[str, int]] = []
    known = {"user_id": "u0", "item_id": items[0]["item_id"]}  # ids that exist: their queries reach the model
    for operation in operations:
        names = {p["name"] for p in document["paths"][operation.path][operation.method.lower()].get("parameters", [])
                 if p["in"] == "path"}
        for fixed in ([None, {n: known[n] for n in names}] if names else [None]):
            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def fuzz(case) -> None:
                response = case.call(base_url=worker.url, headers=auth, timeout=10)
                calls.append((operation.label, response.status_code))
                case.validate_response(response, checks=CHECKS)

            try:
                fuzz()
            except Unsatisfiable:  # negative mode: an operation that takes nothing cannot be sent anything wrong
                assert mode is GenerationMode.NEGATIVE and not _takes_input(document, operation)
    assert all(status < 500 for _, status in calls)
    labels = {label for label, _ in calls}
    wanted = {op.label for op in operations if mode is GenerationMode.POSITIVE or _takes_input(document, op)}
    assert wanted <= labels, "every operation that can be sent this mode's data was called"
    assert len(calls) >= len(wanted) * 5


def _takes_input(document, operation) -> bool:
    entry = document["paths"][operation.path][operation.method.lower()]
    return bool(entry.get("parameters") or entry.get("requestBody"))

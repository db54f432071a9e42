"""GET /openapi.json describes the worker's API truly: a valid OpenAPI 3.1 document, and every
documented route, called on a real worker, answers with a documented status and body schema."""

from __future__ import annotations

import json
import time
import urllib.parse

import jsonschema
import pytest
from openapi_spec_validator import validate

from models.data.synthetic import generate_demo_dataset
from stream.core.experiments import Arm, new_experiment
from stream.kafka.experiments import publish_experiment
from stream.kafka.producer import EventProducer
from tests.worker_harness import start_catalogue_worker, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def world(kafka_bootstrap, tmp_path_factory):
    data = generate_demo_dataset(n_users=10, n_items=60, events_per_user=3, seed=8)
    settings, worker = start_catalogue_worker(kafka_bootstrap, tmp_path_factory.mktemp("openapi"), "itoa", 2,
                                              data.items)
    with EventProducer(settings) as producer:
        for n, item in enumerate(data.items[:3]):
            producer.send({"user_id": f"u{n}", "item_id": item["item_id"], "event_type": "play",
                           "timestamp_ms": int(time.time() * 1000), "value": 100.0})
    for n in range(3):
        wait_for(lambda n=n: worker.get(f"/recommendations/u{n}")[0] == 200, what=f"u{n} applied")
    yield data, worker, settings
    worker.stop()


def schema_of(document, response):
    content = response.get("content", {})
    if "application/json" not in content:
        return None
    schema = content["application/json"]["schema"]
    return {**schema, "components": document["components"]} if "$ref" not in schema else {
        "$ref": schema["$ref"], "components": document["components"]}


def test_the_document_is_valid_openapi_and_every_route_answers_as_documented(world):
    data, worker, settings = world
    status, document = worker.get("/openapi.json")
    assert status == 200
    validate(document)  # OpenAPI 3.1, by the specification's own schema
    # An experiment on model-updates (of versions this worker refuses: listed all the same, no trials).
    publish_experiment(settings, new_experiment("doc", [Arm("a", "v-x", 0.5), Arm("b", "v-y", 0.5)], 1))
    category = data.items[0]["category"]
    values = {"user_id": "u0", "item_id": data.items[0]["item_id"]}
    calls = {  # one good and one bad request per route, each status checked against the document
        ("/recommendations/{user_id}", "get"): [("/recommendations/u0?k=3&category=" + urllib.parse.quote(category), None),
                                                ("/recommendations/nobody", None), ("/recommendations/u0?k=0", None)],
        ("/items/{item_id}/similar", "get"): [(f"/items/{values['item_id']}/similar?k=2&exclude=x,y", None),
                                              ("/items/nothing/similar", None)],
        ("/users/{user_id}/similar", "get"): [("/users/u0/similar?k=2", None), ("/users/nobody/similar", None)],
        ("/users/{user_id}", "get"): [("/users/u0", None), ("/users/nobody", None), ("/users/%20", None)],
        ("/items/{item_id}", "get"): [(f"/items/{values['item_id']}", None), ("/items/nothing", None)],
        ("/users/nearest", "post"): [("/users/nearest", json.dumps({"vector": [0.1] * 64, "k": 2}).encode()),
                                     ("/users/nearest", json.dumps({"vector": [], "k": 2}).encode()),
                                     ("/users/nearest", b"x" * 70_000)],
        ("/items/trending", "get"): [("/items/trending?k=3", None), (f"/items/trending?category={category}", None),
                                     ("/items/trending?category=no-such-category", None)],
        ("/events", "post"): [("/events", json.dumps({"user_id": "u9", "item_id": values["item_id"],
                                                      "event_type": "click",
                                                      "timestamp_ms": int(time.time() * 1000)}).encode()),
                              ("/events", b"{not json")],
        ("/experiments", "get"): [("/experiments", None)],
        ("/healthz", "get"): [("/healthz", None)],
        ("/metrics", "get"): [("/metrics", None)],
        ("/openapi.json", "get"): [("/openapi.json", None)],
    }
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert documented == set(calls), "every documented route is called here, and only those"
    seen = set()
    for (path, method), requests in calls.items():
        responses = document["paths"][path][method]["responses"]
        for url, body in requests:
            status, answer = worker.get(url, body=body)
            assert str(status) in responses, (url, status, answer)
            seen.add((path, str(status)))
            schema = schema_of(document, responses[str(status)])
            if schema is not None:
                jsonschema.validate(answer, schema)
    assert ("/recommendations/{user_id}", "200") in seen and ("/events", "202") in seen
    assert ("/recommendations/{user_id}", "400") in seen and ("/items/{item_id}/similar", "404") in seen
    assert ("/experiments", "200") in seen and ("/users/nearest", "413") in seen
    assert ("/items/trending", "200") in seen and ("/items/trending", "400") in seen
    assert ("/users/{user_id}", "200") in seen and ("/items/{item_id}", "404") in seen
    assert [e["experiment"] for e in worker.get("/experiments")[1]["experiments"]] == ["doc"]

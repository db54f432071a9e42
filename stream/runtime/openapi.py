"""The worker's HTTP API as an OpenAPI 3.1 document, served at ``GET /openapi.json``.

Written by hand next to the views (``stream/runtime/web.py``) rather than generated from
them: Faust's views carry no schema. ``tests/integration/test_openapi.py`` keeps it true:
the document validates as OpenAPI 3.1, and every documented route is called on a real
worker and answers with a documented status and body.
"""

from __future__ import annotations

from typing import Any

from models.feedback import EventType
from stream.core.announcements import VERSION_PATTERN
from stream.runtime.web import MAX_EXCLUDE, MAX_INGEST_BYTES, MAX_INGEST_EVENTS, MAX_NEAREST_BYTES, MAX_VECTOR_DIM


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _path_id(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": what,
            "schema": {"type": "string", "minLength": 1, "maxLength": 128}}


def openapi_document(version: str, top_k: int, max_k: int) -> dict[str, Any]:
    """The document for a worker answering with ``top_k`` results by default and at most ``max_k``."""
    k = {"name": "k", "in": "query", "required": False, "description": f"results wanted (default {top_k})",
         "schema": {"type": "integer", "minimum": 1, "maximum": max_k, "default": top_k}}
    filters = [
        {"name": "category", "in": "query", "required": False,
         "description": "only items of this catalogue category (400 when no live item has it)",
         "schema": {"type": "string", "minLength": 1, "maxLength": 128}},
        {"name": "exclude", "in": "query", "required": False,
         "description": f"comma-separated item ids never returned (at most {MAX_EXCLUDE})",
         "schema": {"type": "string"}},
    ]
    common = {"400": _error("a bad parameter"), "401": _error("the bearer token is missing or wrong"),
              "503": _error("no catalogue or model loaded yet, or the stored state is unreadable")}
    scored_item = {"type": "object", "required": ["item_id", "score"], "properties": {
        "item_id": {"type": "string"}, "score": {"type": "number"}, "title": {"type": ["string", "null"]},
        "reason": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "streamrec worker API", "version": version,
                 "description": "Real-time recommendations, similar items and users, and event ingest. "
                                "With STREAMREC_API_TOKEN set, every route but /healthz needs "
                                "`Authorization: Bearer <token>`."},
        "security": [{"bearer": []}],
        "paths": {
            "/recommendations/{user_id}": {"get": {
                "summary": "The user's recommendations, computed now from their state (routed to the worker owning the user)",
                "operationId": "getRecommendations",
                "parameters": [_path_id("user_id", "the user"), k, *filters],
                "responses": {"200": _json("the recommendation", "Recommendation"),
                              "404": _error("unknown user"), **common}}},
            "/items/{item_id}/similar": {"get": {
                "summary": "The items nearest to an item (e-commerce: similar items)",
                "operationId": "getSimilarItems",
                "parameters": [_path_id("item_id", "the item"), k, *filters],
                "responses": {"200": _json("nearest items, best first", "SimilarItems"),
                              "404": _error("unknown item"), **common}}},
            "/items/trending": {"get": {
                "summary": "The items trending over every worker's events: decayed counts of positive events "
                           "(what users without a positive signal are served)",
                "operationId": "getTrendingItems",
                "parameters": [k, *filters],
                "responses": {"200": _json("trending items, hottest first (scores relative to the first)",
                                           "TrendingItems"), **common}}},
            "/users/{user_id}/similar": {"get": {
                "summary": "Users with the nearest embeddings over every worker (social: friend suggestions); "
                           "the owner asks each other worker (POST /users/nearest) and merges",
                "operationId": "getSimilarUsers",
                "parameters": [_path_id("user_id", "the user"), k],
                "responses": {"200": _json("nearest users, best first", "SimilarUsers"),
                              "404": _error("unknown user, or no embedding yet"), **common}}},
            "/users/{user_id}": {"get": {
                "summary": "The user's recent history (newest first), event counts by type and the model version "
                           "of their vector (routed to the worker owning the user)",
                "operationId": "getUser",
                "parameters": [_path_id("user_id", "the user")],
                "responses": {"200": _json("the user's state", "User"), "404": _error("unknown user"), **common}}},
            "/items/{item_id}": {"get": {
                "summary": "The item's catalogue record, as last published on the items topic",
                "operationId": "getItem",
                "parameters": [_path_id("item_id", "the item")],
                "responses": {"200": _json("the catalogue record", "Item"), "404": _error("unknown item"),
                              **common}}},
            "/users/nearest": {"post": {
                "summary": "This worker's users nearest to a vector (what GET /users/{user_id}/similar merges "
                           "over the workers)",
                "operationId": "postNearestUsers",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["vector"], "properties": {
                        "vector": {"type": "array", "minItems": 1, "maxItems": MAX_VECTOR_DIM,
                                   "items": {"type": "number"}},
                        "k": {"type": "integer", "minimum": 1, "maximum": max_k, "default": 10},
                        "exclude": {"type": "array", "maxItems": MAX_EXCLUDE,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 128}},
                        "model_version": {"type": "string", "pattern": VERSION_PATTERN,
                                          "description": "search the users whose vector this version computed "
                                                         "(default: the served version)"}}}}},
                    "description": f"a body of at most {MAX_NEAREST_BYTES} bytes"},
                "responses": {"200": _json("nearest users of this worker, best first", "NearestUsers"),
                              "413": _error("the body is too large"), **common}}},
            "/events": {"post": {
                "summary": "Events in, for clients that cannot write to Kafka: validated, then written "
                           "to the events topic with acks=all before the answer",
                "operationId": "postEvents",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/Event"},
                    {"type": "array", "minItems": 1, "maxItems": MAX_INGEST_EVENTS,
                     "items": {"$ref": "#/components/schemas/Event"}}]}}},
                    "description": f"one event or an array of at most {MAX_INGEST_EVENTS}; "
                                   f"the body at most {MAX_INGEST_BYTES} bytes"},
                "responses": {"202": _json("how many were written, and why each other was not", "EventsAccepted"),
                              "413": _error("the body is too large"), **common,
                              "503": _error("the broker took none of the events")}}},
            "/experiments": {"get": {
                "summary": "Every experiment started on model-updates, with its per-arm results summed over "
                           "all workers (what `streamrec experiment status` prints)",
                "operationId": "getExperiments",
                "responses": {"200": _json("experiments, oldest first", "Experiments"),
                              "401": _error("the bearer token is missing or wrong"),
                              "503": _error("Kafka did not answer")}}},
            "/healthz": {"get": {
                "summary": "Readiness: 200 once the catalogue and a model are loaded", "operationId": "getHealth",
                "security": [],
                "responses": {"200": _json("ready", "Health"), "503": _json("starting", "Health")}}},
            "/metrics": {"get": {
                "summary": "Prometheus exposition of the worker's metrics", "operationId": "getMetrics",
                "responses": {"200": {"description": "text exposition format",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                              "401": _error("the bearer token is missing or wrong")}}},
            "/openapi.json": {"get": {
                "summary": "This document", "operationId": "getOpenApi",
                "responses": {"200": {"description": "OpenAPI 3.1",
                                      "content": {"application/json": {"schema": {"type": "object"}}}},
                              "401": _error("the bearer token is missing or wrong")}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "status"], "properties": {
                    "error": {"type": "string"}, "status": {"type": "integer"}}},
                "Recommendation": {"type": "object", "required": ["user_id", "items", "source", "model_version"],
                                   "description": "as published on the recommendations topic "
                                                  "(docs/schemas/), plus history_length",
                                   "properties": {
                                       "user_id": {"type": "string"},
                                       "items": {"type": "array", "items": scored_item},
                                       "source": {"enum": ["personal", "trending"]},
                                       "model_version": {"type": "string"},
                                       "index_version": {"type": ["string", "null"]},
                                       "arm": {"type": ["string", "null"],
                                               "description": "the experiment arm serving the user, "
                                                              "null outside any experiment"},
                                       "history_length": {"type": "integer"}}},
                "SimilarItems": {"type": "object", "required": ["item_id", "items", "model_version"], "properties": {
                    "item_id": {"type": "string"}, "items": {"type": "array", "items": scored_item},
                    "model_version": {"type": "string"}, "index_version": {"type": ["string", "null"]}}},
                "TrendingItems": {"type": "object", "required": ["items", "half_life_s"], "properties": {
                    "items": {"type": "array", "items": scored_item}, "half_life_s": {"type": "number"}}},
                "User": {"type": "object", "required": ["user_id", "history", "counts", "model_version"],
                         "properties": {
                    "user_id": {"type": "string"},
                    "history": {"type": "array", "items": {
                        "type": "object", "required": ["item_id", "event_type", "timestamp_ms", "weight"],
                        "properties": {"item_id": {"type": "string"},
                                       "event_type": {"enum": [t.value for t in EventType]},
                                       "timestamp_ms": {"type": "integer"}, "weight": {"type": "number"}}}},
                    "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "model_version": {"type": ["string", "null"]},
                    "last_recommended": {"type": "array", "items": {"type": "string"}},
                    "has_embedding": {"type": "boolean"}}},
                "Item": {"type": "object", "required": ["item_id", "item", "in_index"], "properties": {
                    "item_id": {"type": "string"},
                    "item": {"type": "object", "description": "the items topic's record (docs/schemas/)"},
                    "in_index": {"type": "boolean", "description": "whether the served index holds it"}}},
                "NearestUsers": {"type": "object", "required": ["users", "model_version"], "properties": {
                    "model_version": {"type": "string"},
                    "users": {"type": "array", "items": {"type": "object", "required": ["user_id", "score"],
                                                         "properties": {"user_id": {"type": "string"},
                                                                        "score": {"type": "number"}}}}}},
                "SimilarUsers": {"type": "object", "required": ["user_id", "users", "workers", "partial"],
                                 "properties": {
                    "user_id": {"type": "string"},
                    "workers": {"type": "integer", "minimum": 1, "description": "workers whose users were searched"},
                    "partial": {"type": "boolean", "description": "true when a worker did not answer in time"},
                    "users": {"type": "array", "items": {"type": "object", "required": ["user_id", "score"],
                                                         "properties": {"user_id": {"type": "string"},
                                                                        "score": {"type": "number"}}}}}},
                "Event": {"type": "object", "required": ["user_id", "item_id", "event_type", "timestamp_ms"],
                          "description": "the events topic's record (docs/schemas/); the producer client's rules",
                          "properties": {
                              "user_id": {"type": "string"}, "item_id": {"type": "string"},
                              "event_type": {"enum": [t.value for t in EventType]},
                              "timestamp_ms": {"type": "integer"}, "value": {"type": ["number", "null"]}}},
                "EventsAccepted": {"type": "object", "required": ["accepted", "rejected"], "properties": {
                    "accepted": {"type": "integer", "minimum": 0},
                    "rejected": {"type": "array", "items": {"type": "object",
                                                            "required": ["index", "reason", "detail"],
                                                            "properties": {"index": {"type": "integer"},
                                                                           "reason": {"type": "string"},
                                                                           "detail": {"type": "string"}}}}}},
                "Experiments": {"type": "object", "required": ["experiments", "serving"], "properties": {
                    "serving": {"type": ["string", "null"],
                                "description": "the experiment this worker serves now (null: none)"},
                    "experiments": {"type": "array", "items": {"$ref": "#/components/schemas/ExperimentResults"}}}},
                "ExperimentResults": {
                    "type": "object", "required": ["experiment", "running", "control", "arms"],
                    "properties": {
                        "experiment": {"type": "string"}, "running": {"type": "boolean"},
                        "control": {"type": "string"}, "promoted": {"type": ["string", "null"]},
                        "started_ms": {"type": "integer"}, "stopped_ms": {"type": ["integer", "null"]},
                        "partitions_counted": {"type": "array", "items": {"type": "integer"}},
                        "arms": {"type": "array", "items": {
                            "type": "object", "required": ["arm", "version", "share", "trials", "hits"],
                            "properties": {
                                "arm": {"type": "string"}, "version": {"type": "string"},
                                "share": {"type": "number"}, "trials": {"type": "integer", "minimum": 0},
                                "hits": {"type": "integer", "minimum": 0},
                                "hit_rate": {"type": ["number", "null"]},
                                "interval_95": {"type": "array", "items": {"type": "number"}},
                                "difference": {"type": "number", "description": "hit rate minus the control's"},
                                "z": {"type": "number"}, "p_value": {"type": "number"},
                                "significant": {"type": "boolean",
                                                "description": "two-sided two-proportion z-test, 5% level"}}}}}},
                "Health": {"type": "object", "required": ["status"], "properties": {
                    "status": {"enum": ["ok", "starting"]}, "partitions": {"type": "array"},
                    "model_version": {"type": ["string", "null"]}, "index_version": {"type": ["string", "null"]},
                    "index_kind": {"type": ["string", "null"]}, "items": {"type": "integer"}}},
            },
        },
    }

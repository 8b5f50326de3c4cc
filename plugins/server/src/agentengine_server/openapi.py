"""The OpenAPI 3.1 document served at ``/openapi.json``.

Written out by hand: the API is small, and this keeps the paths and shapes in one place that
the docs and tests check against.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["openapi_document"]

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "A stable, machine-readable code."},
        "message": {"type": "string", "description": "What was wrong and what to do."},
        "path": {
            "type": "string",
            "description": "Where in the JSON the problem is (nested_too_deep, invalid_unicode).",
        },
        "limit": {
            "type": "integer",
            "description": "The limit that was exceeded (nested_too_deep, input_too_large).",
        },
        "available": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The agent names (unknown_agent).",
        },
    },
    "additionalProperties": True,
}
_RUN = {
    "type": "object",
    "properties": {
        "run_id": {"type": "string"},
        "agent": {"type": "string"},
        "thread_id": {"type": "string"},
        "status": {
            "type": "string",
            "enum": ["running", "succeeded", "failed", "timed_out", "cancelled"],
        },
        "output": {},
        "error": {"type": ["string", "null"]},
        "error_type": {"type": ["string", "null"]},
        "created_at": {"type": "number", "description": "Unix time."},
        "finished_at": {"type": ["number", "null"], "description": "Unix time."},
    },
}


def _err(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_UNAUTHORIZED = _err("Missing, invalid or expired bearer token.")
_SHUTTING_DOWN = _err("shutting_down: the server is shutting down; retry on another instance.")
_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "agentengine-server",
        "version": "0.1.0",
        "description": (
            "Each user's agents and live events. Every /v1 call needs "
            "'Authorization: Bearer <JWT>' (HS256, 'sub' = user id, 'exp' required). "
            "The WebSocket API (WS /v1/ws) is described in docs/server.md."
        ),
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": {
            "Error": _ERROR,
            "Run": _RUN,
            "RunRequest": {
                "type": "object",
                "required": ["agent"],
                "additionalProperties": False,
                "properties": {
                    "agent": {"type": "string"},
                    "input": {
                        "type": "object",
                        "description": (
                            "The agent's keyword arguments: at most max_json_depth (64) levels "
                            "deep and max_input_bytes (256 KiB) as compact JSON."
                        ),
                    },
                    "thread_id": {"type": "string"},
                },
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/runs": {
            "post": {
                "summary": "Start a run for the caller.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/RunRequest"}}
                    },
                },
                "responses": {
                    "202": _json(
                        "Accepted; the run's events follow on /v1/events and /v1/ws.",
                        {
                            "type": "object",
                            "properties": {
                                "run_id": {"type": "string"},
                                "thread_id": {"type": "string"},
                                "status": {"type": "string"},
                            },
                        },
                    ),
                    "400": _err(
                        "invalid_json: the body is empty, not UTF-8, not JSON, or holds an "
                        "integer of more than 4300 digits."
                    ),
                    "401": _UNAUTHORIZED,
                    "404": _err("unknown_agent; 'available' lists the agent names."),
                    "413": _err(
                        "body_too_large: the body is over max_body_bytes; input_too_large: the "
                        "run input is over max_input_bytes ('limit')."
                    ),
                    "422": _err(
                        "invalid_request (not an object, unknown, missing or mistyped fields), "
                        "invalid_input (the input is not an object or does not fit the agent, or a "
                        "bad thread_id), "
                        "nested_too_deep (past max_json_depth; 'path', 'limit'), "
                        "invalid_unicode (a lone surrogate; 'path')."
                    ),
                    "429": _err("too_many_runs: too many runs in flight for this user."),
                    "503": _SHUTTING_DOWN,
                },
            },
            "get": {
                "summary": "The caller's runs, oldest first.",
                "responses": {
                    "200": _json(
                        "Runs.",
                        {
                            "type": "object",
                            "properties": {
                                "runs": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Run"},
                                }
                            },
                        },
                    ),
                    "401": _UNAUTHORIZED,
                },
            },
        },
        "/v1/runs/{run_id}": {
            "get": {
                "summary": "Status, output and error of one of the caller's runs.",
                "parameters": [_RUN_ID],
                "responses": {
                    "200": _json("The run.", {"$ref": "#/components/schemas/Run"}),
                    "401": _UNAUTHORIZED,
                    "404": _err("No such run for this caller (other users' runs look missing)."),
                },
            }
        },
        "/v1/runs/{run_id}/cancel": {
            "post": {
                "summary": "Cancel one of the caller's runs; answers its final state.",
                "parameters": [_RUN_ID],
                "responses": {
                    "200": _json("The cancelled run.", {"$ref": "#/components/schemas/Run"}),
                    "401": _UNAUTHORIZED,
                    "404": _err("No such run for this caller."),
                    "409": _err("The run had already ended."),
                },
            }
        },
        "/v1/events": {
            "get": {
                "summary": "The caller's events as Server-Sent Events; 'id:' is the cursor.",
                "description": (
                    "Resume with the Last-Event-ID header (or ?after=<cursor>). Without one the "
                    "stream starts with the next event. EventSource clients may pass ?token=."
                ),
                "parameters": [
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                    {"name": "token", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "An event stream (each data line is an event's JSON).",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "401": _UNAUTHORIZED,
                    "429": _err(
                        "too_many_connections: the caller holds max_connections_per_user event "
                        "streams (WebSocket and SSE); 'limit' is that number."
                    ),
                    "503": _SHUTTING_DOWN,
                },
            }
        },
        "/v1/agents": {
            "get": {
                "summary": "Agents the caller can run, with their input JSON schemas.",
                "responses": {"200": _json("Agents.", {"type": "object"}), "401": _UNAUTHORIZED},
            }
        },
        "/healthz": {
            "get": {
                "summary": "200 while serving, 503 while shutting down.",
                "security": [],
                "responses": {
                    "200": _json("Serving.", {"type": "object"}),
                    "503": _json("Shutting down.", {"type": "object"}),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus text: runs by status, events delivered, clients, errors.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus exposition format 0.0.4.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    },
}

_DEV_TOKEN = {
    "post": {
        "summary": "Development only (--dev): a token for any user name.",
        "security": [],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["user"],
                        "properties": {"user": {"type": "string"}},
                    }
                }
            },
        },
        "responses": {
            "200": _json(
                "A token.",
                {
                    "type": "object",
                    "properties": {
                        "token": {"type": "string"},
                        "user": {"type": "string"},
                        "expires_in": {"type": "integer"},
                    },
                },
            ),
            "400": _err("invalid_json: the body is not JSON."),
            "413": _err("body_too_large: the body is over max_body_bytes."),
            "415": _err("The body is not sent as application/json."),
            "421": _err("The Host is not a loopback name (localhost, 127.0.0.1, [::1])."),
            "422": _err("Not a usable user name (or a body that is not {'user': <string>})."),
        },
    }
}


def openapi_document(*, dev: bool = False) -> dict[str, Any]:
    """The OpenAPI document (with ``/v1/dev/token`` when ``dev``)."""
    doc = copy.deepcopy(_DOCUMENT)
    if dev:
        doc["paths"]["/v1/dev/token"] = copy.deepcopy(_DEV_TOKEN)
    return doc

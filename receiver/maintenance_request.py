"""The body of a /maintenance/* request, checked: a JSON object of known fields, each of
its type. Pure; a bad body raises BadRequest with the sentence the 400 answer carries."""
from __future__ import annotations

import json
from typing import Mapping

from receiver.events import escape_controls
from receiver.maintenance import NODE_NAME_MAX

# The fields a request may carry, and their JSON types.
FIELD_TYPES: Mapping[str, type] = {"node": str, "force": bool, "dry_run": bool}


class BadRequest(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_request(body: bytes, allowed: tuple[str, ...]) -> dict:
    """The request's fields. Unknown fields are refused rather than ignored: a misspelt
    `dry_run` must not become a real drain."""
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(k for k in data if k not in allowed)
    if unknown:
        shown = ", ".join(repr(escape_controls(k[:64])) for k in unknown[:5])
        raise BadRequest(f"unknown field(s) {shown}; this request takes {', '.join(allowed)}")
    for key, value in data.items():
        if not isinstance(value, FIELD_TYPES[key]):
            raise BadRequest(f"{key} must be a JSON {_json_type(FIELD_TYPES[key])}")
    if "node" in allowed:
        node = data.get("node")
        if not node or not node.strip():
            raise BadRequest("node is required: a node's hostname or ID")
        if len(node) > NODE_NAME_MAX or escape_controls(node) != node:
            raise BadRequest(f"node must be a hostname or ID: at most {NODE_NAME_MAX} "
                             f"printable characters")
    return data


def node_name(fields: Mapping) -> str:
    return fields["node"].strip()


def _json_type(kind: type) -> str:
    return {str: "string", bool: "boolean (true or false)"}[kind]

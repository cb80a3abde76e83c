"""schemathesis (property-based API testing) against the OpenAPI description the node serves.

A node runs as its own process on 127.0.0.1 with a funded member. schemathesis generates requests
for every operation from `/api/v2/doc` (valid and invalid ones); a `before_call` hook signs each
of them like a Peatio client (public endpoints too, which are then checked), and every response must
be no server error, have a documented status and content type, and match its documented schema.

Bounded: `MAX_EXAMPLES` per operation (about 20 operations), well under two minutes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from node.web.api import ROUTES
from node.web.signature import payload, sign, to_query
from tests.nodeproc import NodeProcess, cli, write_config

MAX_EXAMPLES = 25
LIMITS = "\n[api]\nsigned_limit = 1000000\npublic_limit = 1000000\n"
FORM = "application/x-www-form-urlencoded"


class Signer:
    """The member's key, and strictly increasing tonces (several requests may share a millisecond)."""

    access_key = ""
    secret_key = ""
    last_tonce = 0

    @classmethod
    def tonce(cls) -> str:
        cls.last_tonce = max(cls.last_tonce + 1, time.time_ns() // 1_000_000)
        return str(cls.last_tonce)


def _wire(value: Any) -> Any:
    """A value as the server will have decoded it: every scalar a string, lists and dicts kept."""
    if isinstance(value, dict):
        return {str(k): _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Sign the request: the canonical payload over the query merged with the body (as the server
    merges them). A form body is encoded here, Rack-style (`orders[][side]=…`), since that nesting
    is what Peatio's form format means and a generic encoder does not produce it."""
    if not Signer.access_key:
        return
    query = dict(case.query or {})
    body = case.body if isinstance(case.body, dict) else None
    params: dict[str, Any] = {k: _wire(v) for k, v in query.items()}
    if body is not None:
        params.update({k: _wire(v) for k, v in body.items()})
        if (case.media_type or "").startswith(FORM):
            case.body = to_query(_wire(body))
    params["access_key"] = Signer.access_key
    params["tonce"] = Signer.tonce()
    signature = sign(Signer.secret_key, payload(case.method, "/api/v2" + case.formatted_path, params))
    case.query = {**query, "access_key": Signer.access_key, "tonce": params["tonce"], "signature": signature}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    import socket

    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = write_config(tmp, f"sqlite:///{tmp}/exchange.db", port, extra=LIMITS)
    key_file = tmp / "secret.key"
    cli(config, "member", "create", "fuzz@example.com")
    for cur, amount in (("usd", "1000000"), ("btc", "100"), ("ltc", "1000"), ("doge", "1000000")):
        cli(config, "deposit", "fuzz@example.com", cur, amount)
    out = cli(config, "apikey", "create", "fuzz@example.com", key_file=key_file)
    kv = dict(line.split("=", 1) for line in out.strip().splitlines())
    Signer.access_key, Signer.secret_key = kv["access_key"], kv["secret_key"]
    proc = NodeProcess(config, port, key_file, tmp / "node.log")
    asyncio.run(proc.start())
    try:
        yield proc
    finally:
        Signer.access_key = ""
        proc.terminate()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.mark.slow
def test_api_conforms_to_its_description(node: NodeProcess, session: requests.Session) -> None:
    """Each operation of the served description gets its own bounded hypothesis run.

    (Driven through schemathesis' Python API rather than its pytest plugin, whose lazy-fixture
    loader does not work with pytest 9.)
    """
    schema = schemathesis.openapi.from_url(node.base + "/api/v2/doc")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {f"{m} {p}" for m, p, _ in ROUTES} <= labels, labels  # ours, plus those of other modules
    seen: dict[str, set[int]] = {}

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call(base_url=node.base + "/api/v2", session=session, timeout=10)
            where = f"{case.method} {case.formatted_path} {case.query} {case.body!r}"
            assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
            case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                                     response_headers_conformance, response_schema_conformance])
            if response.status_code == 401:  # a signing mismatch would hide everything behind it
                assert response.json()["error"]["code"] != 2005, where
            seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)

        run()
    # the run reached past validation: orders were placed, reads answered
    assert 201 in seen["POST /orders"], seen
    assert 200 in seen["GET /orders"], seen

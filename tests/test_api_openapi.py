"""The OpenAPI description stays in sync with the application's routes, and is served with its page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.web.openapi import OPERATIONS, STATIC, app_operations
from tests.test_api_support import ApiServer, api_server

PREFIX = "/api/v2"


@pytest.fixture
async def srv(tmp_path: Path) -> Any:
    async with api_server(f"sqlite:///{tmp_path}/exchange.db", tmp_path) as s:
        yield s


async def fetch_spec(srv: ApiServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(srv.base + "/api/v2/doc") as r:
        assert r.status == 200 and r.content_type == "application/json"
        spec: dict[str, Any] = await r.json()
        return spec


async def test_every_route_is_described_and_every_description_routed(srv: ApiServer) -> None:
    spec = await fetch_spec(srv)
    described = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    routed = app_operations(srv.app)
    assert routed - set(OPERATIONS) == set(), "routes that have no OpenAPI description"
    assert routed - described == set(), "routes missing from the served description"
    assert described - routed == set(), "described operations without a route"
    # every API route also answers with a `.json` suffix
    canonical = {r.resource.canonical for r in srv.app.router.routes() if r.resource is not None}
    for _, path in routed:
        plain = PREFIX + re.sub(r"\{(\w+)\}", r"{\1:[a-z0-9]+}", path)
        assert plain + ".json" in canonical or re.sub(r":\[a-z0-9\]\+", "", plain) + ".json" in canonical, path
    # and our own routes are all there (the market-data module adds the tickers and k-lines)
    from node.web.api import ROUTES

    assert {(m, p) for m, p, _ in ROUTES} | {("GET", "/doc")} <= routed


async def test_spec_is_well_formed(srv: ApiServer) -> None:
    spec = await fetch_spec(srv)
    assert spec["openapi"].startswith("3.")
    schemas = spec["components"]["schemas"]
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', str(spec).replace("'", '"')))
    assert refs <= set(schemas), refs - set(schemas)
    for path, item in spec["paths"].items():
        for method, op in item.items():
            assert op.get("summary"), (method, path)
            assert op["responses"], (method, path)
            names = [p["name"] for p in op.get("parameters", [])]
            assert len(names) == len(set(names)), (method, path)
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    assert "{" + p["name"] + "}" in path
    markets = spec["paths"]["/depth"]["get"]["parameters"][0]["schema"]["enum"]
    assert markets == list(srv.ex.config.markets)  # from the configuration, not hard-coded
    # schemathesis can load it (it validates the document on load)
    import schemathesis

    schema = schemathesis.openapi.from_dict(spec)
    assert len(list(schema.get_all_operations())) == sum(len(i) for i in spec["paths"].values())


async def test_doc_page_renders_our_own_script(srv: ApiServer) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(srv.base + "/api-docs") as r:
            assert r.status == 200 and r.content_type == "text/html"
            html = await r.text()
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp
        assert "/static/apidoc.js" in html and "http" not in html.replace('href="/api/v2/doc"', "")
        async with s.get(srv.base + "/static/apidoc.js") as r:
            assert r.status == 200
            js = await r.text()
            assert "/api/v2/doc" in js and "innerHTML" not in js
        async with s.get(srv.base + "/api/v2/doc.json") as r:
            assert r.status == 200
    assert (STATIC / "apidoc.css").exists()

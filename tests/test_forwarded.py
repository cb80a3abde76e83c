"""A trusted proxy's X-Forwarded-For and X-Forwarded-Proto (node/web/forwarded.py): believed only from
the networks of `[http] trusted_proxies`, validated strictly, and then seen everywhere the client's
address or scheme counts: per-address rate limits, the audit log, `Secure` cookies and HSTS. Over real
sockets: 127.0.0.1 is the trusted balancer, 127.0.0.2 a client connecting directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from node.config import ConfigError, HttpConf
from node.security import audit
from node.web.forwarded import MAX_HOPS, TrustedProxies
from node.web.ws import HUB
from tests.conftest import config_with
from tests.security_site import security_site
from tests.test_security_throttle import login

PROXY = {"trusted_proxies": ["127.0.0.1"]}


def test_the_client_is_the_right_most_address_no_trusted_proxy_added() -> None:
    p = TrustedProxies(["10.0.0.0/8", "2001:db8::/32"])
    assert p.client("10.0.0.5", ["203.0.113.9"]) == "203.0.113.9"
    # what the client wrote itself (left) proves nothing; the proxies' own hops (right) are skipped
    assert p.client("10.0.0.5", ["6.6.6.6, 203.0.113.9, 10.1.2.3"]) == "203.0.113.9"
    assert p.client("10.0.0.5", ["6.6.6.6", "203.0.113.9"]) == "203.0.113.9"  # two header lines are one list
    assert p.client("10.0.0.5", ["10.0.0.7, 10.0.0.6"]) == "10.0.0.7"  # all proxies: the left-most
    assert p.client("2001:db8::1", [" 2001:db8:1::5 , 2a00::1 "]) == "2a00::1"
    assert p.client("::ffff:10.0.0.5", ["203.0.113.9"]) == "203.0.113.9"  # a dual-stack socket's peer
    assert p.client("10.0.0.5", []) == "10.0.0.5"
    # from anyone else the header means nothing
    assert p.client("192.0.2.1", ["203.0.113.9"]) == "192.0.2.1"
    assert p.client(None, ["203.0.113.9"]) is None
    # a chain that is not a list of addresses, where it is read, is dropped as a whole
    for bad in ("nonsense", "203.0.113.9:443", "203.0.113.9, ", "[2a00::1]", "203.0.113.9;evil",
                "1.1.1.1, " * 200 + "203.0.113.9", ", ".join(["10.0.0.1"] * (MAX_HOPS + 1))):
        assert p.client("10.0.0.5", [bad]) == "10.0.0.5", bad
    assert p.client("10.0.0.5", ["junk, 203.0.113.9"]) == "203.0.113.9"  # left of the client: never read
    assert not TrustedProxies([])
    assert p.scheme("10.0.0.5", "https", "http") == "https"
    assert p.scheme("10.0.0.5", "http, HTTPS", "http") == "https"  # the trusted proxy's own, right-most word
    assert p.scheme("10.0.0.5", "gopher", "http") == "http"
    assert p.scheme("192.0.2.1", "https", "http") == "http"


def test_trusted_proxies_are_validated() -> None:
    assert config_with("sqlite:///x.db").http.trusted_proxies == ()
    cfg = config_with("sqlite:///x.db", http={"trusted_proxies": ["10.0.0.0/8", " 192.0.2.7", "2001:db8::/32"]})
    assert cfg.http == HttpConf(trusted_proxies=("10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"))
    for bad in (["10.0.0.1/8"], ["example.com"], [10], "10.0.0.0/8"):
        with pytest.raises(ConfigError, match="trusted_proxies"):
            config_with("sqlite:///x.db", http={"trusted_proxies": bad})


async def test_a_trusted_proxy_names_the_client_and_nobody_else_can(tmp_path: Path) -> None:
    async with security_site(tmp_path, http=PROXY, api={"public_limit": 2, "signed_limit": 1000}) as (site, _):
        balancer = await site.visitor()
        direct = await site.visitor(source="127.0.0.2")

        async def markets(v: Any, client: str) -> int:
            r = await v.c.get("/api/v2/markets", headers={"X-Forwarded-For": client})
            return int(r.status)

        # per-address limits count each client behind the balancer on its own
        assert [await markets(balancer, "198.51.100.1") for _ in range(3)] == [200, 200, 429]
        assert await markets(balancer, "198.51.100.2") == 200
        # a forged left entry counts nothing against the address it names: this call was .3's
        assert await markets(balancer, "198.51.100.1, 198.51.100.3") == 200
        assert [await markets(balancer, "198.51.100.3") for _ in range(2)] == [200, 429]
        # a direct client cannot pick an address: every request counts against its own
        assert [await markets(direct, f"198.51.100.{i}") for i in (10, 11, 12)] == [200, 200, 429]

        # the audit log names the client
        await site.member("ann@example.com")
        ann = await site.mid("ann@example.com")
        for v, forwarded in ((balancer, "203.0.113.7"), (direct, "203.0.113.8")):
            v.c.session.headers["X-Forwarded-For"] = forwarded
            assert await login(v, "ann@example.com", "wrong") == 400
        failed = [e["ip"] for e in await audit.of_member(site.ex.store, ann) if e["action"] == audit.LOGIN_FAILED]
        assert failed == ["127.0.0.2", "203.0.113.7"]  # newest first

        # a websocket through the balancer counts against the client's address
        hub = site.server.app[HUB]
        async with balancer.c.ws_connect("/ws", headers={"X-Forwarded-For": "203.0.113.20"}) as ws:
            assert not ws.closed and hub.per_ip.get("203.0.113.20") == 1 and "127.0.0.1" not in hub.per_ip

        # TLS ended at the balancer: Secure cookies and HSTS; a direct client's claim changes nothing
        for v, secure in ((await site.visitor(), True), (await site.visitor(source="127.0.0.2"), False)):
            r = await v.c.get("/login", headers={"X-Forwarded-Proto": "https"})
            assert r.status == 200
            assert ("Strict-Transport-Security" in r.headers) is secure
            cookies = r.headers.getall("Set-Cookie", [])
            assert cookies and all(("; Secure" in c) is secure for c in cookies), cookies


async def test_behind_a_trusted_proxy_connections_count_per_forwarded_client(tmp_path: Path, free_port: int) -> None:
    """A node as a process, 127.0.0.1 its trusted balancer: `max_connections_per_ip` (3) counts the
    connections busy for each forwarded client (websockets here, busy for their whole life), not
    the balancer's; a client over it gets a 503 while the balancer's connections stay; the
    balancer itself is bounded by `max_connections_per_proxy` (8)."""
    import asyncio

    import aiohttp

    from tests.nodeproc import NodeProcess, write_config

    config = write_config(tmp_path, f"sqlite:///{tmp_path}/exchange.db", free_port,
                          '\n[http]\ntrusted_proxies = ["127.0.0.1"]\nmax_connections_per_ip = 3\n'
                          "max_connections_per_proxy = 8\nws_max_per_ip = 100\n")
    node = NodeProcess(config, free_port, tmp_path / "secret.key", tmp_path / "node.log")
    await node.start()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))
    open_ws: list[aiohttp.ClientWebSocketResponse] = []

    async def ws(client: str) -> aiohttp.ClientWebSocketResponse:
        w = await session.ws_connect(node.base + "/ws", headers={"X-Forwarded-For": client})
        await w.receive_json(timeout=5)  # the challenge: the handler runs, the connection is busy
        open_ws.append(w)
        return w

    try:
        a = [await ws("203.0.113.1") for _ in range(3)]
        for _ in range(3):
            await ws("203.0.113.2")
        await ws("203.0.113.3")  # seven busy connections from one TCP peer: over 3, under 8
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await ws("203.0.113.1")  # a fourth for the same client
        assert e.value.status == 503
        async with session.get(node.base + "/api/v2/markets", headers={"X-Forwarded-For": "203.0.113.1"}) as r:
            assert r.status == 503 and (await r.json())["error"]["code"] == 3003
            assert r.headers["Retry-After"] == "1"
        async with session.get(node.base + "/api/v2/markets", headers={"X-Forwarded-For": "203.0.113.4"}) as r:
            assert r.status == 200  # another client through the same balancer: served
        assert not any(w.closed for w in open_ws)
        await a[0].close()
        open_ws.remove(a[0])
        for _ in range(50):  # its connection no longer counts for the client once its request ends
            try:
                await ws("203.0.113.1")
                break
            except aiohttp.WSServerHandshakeError:
                await asyncio.sleep(0.1)
        assert len(open_ws) == 7
        await ws("203.0.113.5")  # the balancer's eighth busy connection
        with pytest.raises((aiohttp.WSServerHandshakeError, aiohttp.ClientError)):
            await ws("203.0.113.6")  # a ninth from the balancer: none idle to push out, shed
        log = (tmp_path / "node.log").read_text()
        assert "refused a request from 203.0.113.1 through proxy 127.0.0.1: 3 connections busy" in log
        assert "refused a connection from 127.0.0.1: 8 open from this address (cap 8)" in log
    finally:
        for w in open_ws:
            await w.close()
        await session.close()
        node.terminate()

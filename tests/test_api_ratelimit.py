"""Rate limits: the sliding window itself (with a fake clock), the `[api]` table of cluster.toml,
and 429 answers over HTTP (per access key for signed requests, per IP for the others, failed
authentications counted against the IP)."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from node.config import ApiConf, ConfigError
from node.errors import RateLimited
from node.web.ratelimit import SlidingWindow
from node.web.signature import payload, sign, to_query
from tests.apiclient import ApiClient, ApiError
from tests.conftest import config_with
from tests.test_api_support import api_server


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_window_allows_the_limit_then_refuses_with_retry_after() -> None:
    clock = Clock(1000.0)  # the start of a 10 s window
    w = SlidingWindow(5, 10, "things", clock)
    for _ in range(5):
        w.hit("k")
    with pytest.raises(RateLimited) as e:
        w.hit("k")
    assert e.value.code == 3001 and e.value.status == 429
    assert "5 things per 10 s" in e.value.message
    assert 1 <= e.value.retry_after <= 20
    w.hit("other")  # keys are independent
    # the refusal counted nothing; waiting Retry-After is enough to get through
    clock.t += e.value.retry_after
    w.hit("k")


def test_window_slides_instead_of_resetting() -> None:
    clock = Clock(1009.0)  # 90% into the window 1000..1010
    w = SlidingWindow(10, 10, "things", clock)
    for _ in range(10):
        w.hit("k")
    clock.t = 1010.5  # just into the next window: the previous one still weighs 95%
    with pytest.raises(RateLimited):
        w.hit("k")
    clock.t = 1015.0  # half of it has faded: 5 more fit
    for _ in range(5):
        w.hit("k")
    with pytest.raises(RateLimited):
        w.hit("k")
    clock.t = 1030.0  # two windows later: all forgotten
    for _ in range(10):
        w.hit("k")


def test_retry_after_is_honest() -> None:
    """Retry-After is never too short: after waiting it, one more request fits."""
    for limit, window, start in ((3, 60, 0.0), (100, 300, 123.4), (1, 5, 4.9)):
        clock = Clock(start)
        w = SlidingWindow(limit, window, "x", clock)
        for _ in range(50):
            try:
                w.hit("k")
            except RateLimited as e:
                clock.t += e.retry_after
                w.hit("k")  # must not raise
            clock.t += window / 97


def test_stale_buckets_are_swept_and_zero_disables() -> None:
    clock = Clock(0.0)
    w = SlidingWindow(10, 1, "x", clock)
    for i in range(1000):
        w.hit(f"ip{i}")
    assert len(w) == 1000
    clock.t = 5.0
    w.hit("late")
    assert len(w) == 1
    off = SlidingWindow(0, 1, "x", clock)
    for _ in range(10_000):
        off.hit("k")


def test_api_table_of_cluster_toml() -> None:
    cfg = config_with("sqlite:///x.db")
    assert cfg.api == ApiConf(6000, 300, 1200, 60)  # defaults when the table is absent
    cfg = config_with("sqlite:///x.db", api={"signed_limit": 10, "signed_window_s": 1, "public_limit": 0})
    assert (cfg.api.signed_limit, cfg.api.signed_window, cfg.api.public_limit) == (10, 1, 0)
    for bad, field in (({"signed_limit": -1}, "api.signed_limit"), ({"public_window_s": 0}, "api.public_window_s"),
                       ({"signed_limit": "many"}, "api.signed_limit")):
        with pytest.raises(ConfigError, match=field):
            config_with("sqlite:///x.db", api=bad)


async def test_429_over_http(tmp_path: Path) -> None:
    limits = {"signed_limit": 3, "signed_window_s": 60, "public_limit": 4, "public_window_s": 60}
    async with api_server(f"sqlite:///{tmp_path}/exchange.db", tmp_path, api=limits) as srv:
        _, access, secret = await srv.member("a@example.com")
        _, access2, secret2 = await srv.member("b@example.com")
        c = ApiClient(srv.base, access, secret)
        for _ in range(3):
            await c.get("/members/me")
        with pytest.raises(ApiError) as e:
            await c.get("/members/me")
        assert (e.value.status, e.value.code) == (429, 3001)
        # another key has its own allowance, also on public endpoints when signed
        c2 = ApiClient(srv.base, access2, secret2)
        await c2.get("/markets")
        # unsigned requests count per IP
        async with aiohttp.ClientSession() as s:
            statuses = []
            for _ in range(4):
                async with s.get(srv.base + "/api/v2/timestamp") as r:
                    statuses.append(r.status)
            assert statuses == [200] * 4
            async with s.get(srv.base + "/api/v2/markets.json") as r:
                assert r.status == 429
                assert int(r.headers["Retry-After"]) >= 1
                assert r.headers["Access-Control-Allow-Origin"] == "*"
                body = await r.json()
                assert body["error"]["code"] == 3001 and "per IP" in body["error"]["message"]
        for x in (c, c2):
            await x.close()


async def test_failed_authentication_counts_against_the_ip(tmp_path: Path) -> None:
    """Guessing signatures is limited by the IP's allowance; the key's own allowance is untouched."""
    limits = {"signed_limit": 100, "public_limit": 3, "public_window_s": 60}
    async with api_server(f"sqlite:///{tmp_path}/exchange.db", tmp_path, api=limits) as srv:
        _, access, secret = await srv.member("a@example.com")
        async with aiohttp.ClientSession() as s:
            codes = []
            for _ in range(5):
                p = {"access_key": access, "tonce": str(time.time_ns() // 1_000_000)}
                p["signature"] = sign("guess", payload("GET", "/api/v2/members/me", p))
                async with s.get(f"{srv.base}/api/v2/members/me?{to_query(p)}") as r:
                    codes.append((await r.json())["error"]["code"])
            assert codes == [2005, 2005, 2005, 3001, 3001]
        c = ApiClient(srv.base, access, secret)
        assert (await c.get("/members/me"))["email"] == "a@example.com"
        await c.close()

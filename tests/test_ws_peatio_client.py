"""Acceptance: PyPI's `peatio-client==0.1.1`, unmodified, streams from our websocket API.

Its `StreamingClient` answers the challenge (HMAC of access key + challenge), then hands every other
frame to `on_message`. It imports `websocket` (websocket-client) without declaring it; the test extra
installs both. It runs in a thread (it is blocking), against a node served on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from node.bootstrap import start_exchange
from tests.conftest import config_with
from tests.wsclient import serve

peatio_client = pytest.importorskip("peatio_client")


async def test_streaming_client_authenticates_and_receives_its_trade(tmp_path: Path) -> None:
    ex = await start_exchange(config_with(f"sqlite:///{tmp_path}/exchange.db"))
    try:
        async with serve(ex, tmp_path) as node:
            me, ak, sk = await node.member("peatio@example.com")
            other = (await node.member("counterparty@example.com"))[0]
            got: list[dict[str, Any]] = []
            failure: list[BaseException] = []
            client = peatio_client.StreamingClient(ak, sk, endpoint=f"ws://127.0.0.1:{node.server.port}/ws",
                                                   logger=logging.getLogger("peatio-client"))

            def run() -> None:
                try:
                    client.run(on_message=got.append)
                except BaseException as e:  # noqa: BLE001 - reported below unless it is the close quirk
                    failure.append(e)

            thread = threading.Thread(target=run, daemon=True)
            thread.start()

            async def until(pred: Any, what: str) -> dict[str, Any]:
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    for m in list(got):
                        if pred(m):
                            return m
                    assert not failure, failure
                    await asyncio.sleep(0.02)
                raise AssertionError(f"no {what}; got {got}")

            assert await until(lambda m: "success" in m, "auth reply") == {"success": {"message": "Authenticated."}}
            sell = await node.order(me, "sell", "0.5", "30000")
            await node.order(other, "buy", "0.2", "30000")
            trade = (await until(lambda m: "trade" in m, "trade"))["trade"]
            assert trade["side"] == "ask" and trade["volume"] == "0.2" and trade["price"] == "30000.0"
            assert trade["ask"]["id"] == sell["id"]
            book = await until(lambda m: "orderbook" in m and m["orderbook"]["action"] == "update", "book update")
            assert book["orderbook"]["order"]["volume"] == "0.3"
            # Closing from our side ends its run_forever(). websocket-client >= 1.0 calls its 1-argument
            # on_close with 3 arguments: logged by websocket-client (some versions re-raise it through
            # the client's on_error), after the stream is over, so that one error is tolerated.
            await node.hub.shutdown()
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
            assert not thread.is_alive()
            assert all("on_close()" in str(e) or "positional argument" in str(e) for e in failure), failure
    finally:
        await ex.stop()

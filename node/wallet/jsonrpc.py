"""A small JSON-RPC 1.0 client for bitcoind-style daemons, over aiohttp, with no float anywhere.

bitcoind writes amounts as JSON numbers (`1.23456789`): parsed with `float` they would be rounded
binary fractions, so responses are decoded with `parse_float=Decimal`. Requests are encoded by hand
so that a Decimal amount goes out as its exact decimal literal, never through a float.

Failures are told apart because a payment depends on it: a connection that could not be opened
means the request never reached the daemon (safe to retry); a timeout or a connection dropped after
sending means it may have been executed (`maybe_done`: reconcile, do not resend).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import aiohttp

from node.wallet.channel import ChannelError, ChannelUnavailable


def encode(value: Any) -> str:
    """JSON text for `value`, with Decimals written exactly ('1.50000000', never 1.5000000000001)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("cannot send a non-finite amount")
        return format(value, "f")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(encode(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} for JSON-RPC (floats are not allowed)")


def decode(text: str) -> Any:
    """Parse a daemon's answer with every non-integer number as an exact Decimal."""
    return json.loads(text, parse_float=Decimal)


class JsonRpc:
    def __init__(self, url: str, user: str = "", password: str = "", timeout: float = 15.0) -> None:
        self.url = url
        self.headers = {"Content-Type": "application/json"}
        if user or password:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._ids = 0

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # A fresh connection per call: a daemon restart never leaves us a stale keep-alive socket.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        self._ids += 1
        body = f'{{"jsonrpc":"1.0","id":{self._ids},"method":{json.dumps(method)},"params":{encode(list(params))}}}'
        limit = aiohttp.ClientTimeout(total=timeout or self.timeout)
        try:
            async with self._http().post(self.url, data=body.encode(), timeout=limit, headers=self.headers) as resp:
                text = await resp.text()
                status = resp.status
        except aiohttp.ClientConnectorError as e:  # never connected: the daemon saw nothing
            raise ChannelUnavailable(f"cannot connect to {self._where()}: {e.strerror or e}", maybe_done=False) from None
        except TimeoutError:
            raise ChannelUnavailable(f"{method} to {self._where()} timed out", maybe_done=True) from None
        except aiohttp.ClientError as e:
            raise ChannelUnavailable(f"{method} to {self._where()} failed: {e!r}", maybe_done=True) from None
        if status == 401:
            raise ChannelUnavailable(f"{self._where()} refused the RPC credentials (HTTP 401)", maybe_done=False)
        try:
            doc = decode(text)
        except ValueError:
            raise ChannelUnavailable(
                f"{method}: {self._where()} answered HTTP {status} without JSON: {text[:200]!r}", maybe_done=status != 503
            ) from None
        if not isinstance(doc, dict):
            raise ChannelUnavailable(f"{method}: unexpected answer {text[:200]!r}", maybe_done=True)
        err = doc.get("error")
        if err:
            code = err.get("code", 0) if isinstance(err, dict) else 0
            msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            if code == -28:  # warming up (loading blocks, verifying): not an answer, come back later
                raise ChannelUnavailable(f"{self._where()} is starting: {msg}", maybe_done=False)
            raise ChannelError(int(code), str(msg))
        if status >= 400:
            raise ChannelUnavailable(f"{method}: HTTP {status} from {self._where()}", maybe_done=True)
        return doc.get("result")

    def _where(self) -> str:
        """The URL without any credentials, for messages and logs."""
        from urllib.parse import urlsplit

        u = urlsplit(self.url)
        host = u.hostname or ""
        return f"{u.scheme}://{host}{':' + str(u.port) if u.port else ''}{u.path}"

"""A small signed API v2 client for tests, speaking HTTP over real sockets."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from node.web.signature import payload, sign, to_query


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body

    @property
    def code(self) -> int | None:
        try:
            return int(self.body["error"]["code"])
        except (KeyError, TypeError, ValueError):
            return None


class ApiClient:
    def __init__(self, base: str, access_key: str = "", secret_key: str = "", session: aiohttp.ClientSession | None = None) -> None:
        self.base = base.rstrip("/")
        self.access_key = access_key
        self.secret_key = secret_key
        self._session = session
        self._tonce = 0
        self.headers: Mapping[str, str] = {}  # the last answer's

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def tonce(self) -> int:
        """Milliseconds, strictly increasing even for calls within the same millisecond."""
        self._tonce = max(self._tonce + 1, int(time.time() * 1000))
        return self._tonce

    def signed_params(self, verb: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        p = dict(params, access_key=self.access_key, tonce=str(self.tonce()))
        p["signature"] = sign(self.secret_key, payload(verb, path, p))
        return p

    async def request(self, verb: str, path: str, params: dict[str, Any] | None = None, signed: bool = True) -> Any:
        params = dict(params or {})
        full = "/api/v2" + path
        if signed:
            params = self.signed_params(verb, full, params)
        query = to_query(params)
        if verb == "GET":
            url, data = f"{self.base}{full}?{query}", None
        else:
            url, data = f"{self.base}{full}", query.encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if data is not None else {}
        async with self.session.request(verb, url, data=data, headers=headers) as resp:
            self.headers = resp.headers
            body = await resp.json(content_type=None)
            if resp.status >= 400:
                raise ApiError(resp.status, body)
            return body

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params)

    async def post(self, path: str, **params: Any) -> Any:
        return await self.request("POST", path, params)

    async def public(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params, signed=False)

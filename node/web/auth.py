"""Signed API requests: Peatio's HMAC scheme, checked in an order that leaks and burns nothing.

Order of checks: the key exists and may be used (enabled, not expired, allowed IP) → the tonce is
within ±30 s → the signature is right → only then is the tonce burnt (so a forged request cannot
use up a client's tonces) → the key's rate limit (after the signature, so that nobody without the
secret can exhaust a client's allowance) → the tonce is burnt → the scope covers the endpoint. The
replay memory lives in the store, so it survives restarts and is shared by every node; a small actor
batches its writes (one INSERT per batch of requests, which also records the keys' last use).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from node.actors.runtime import Actor
from node.apikeys import ApiKeys, Token
from node.errors import AuthorizationFailed, ExchangeError
from node.store import Store
from node.web.params import Params, ParamValue
from node.web.signature import EXCLUDED_PARAMS, TONCE_WINDOW_MS, check_tonce, payload, verify_signature


class AuthError(ExchangeError):
    status = 401

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


LAST_USED_EVERY = 60.0  # seconds between two writes of a key's last_used_at
_SAFE_KEY = re.compile(r"[A-Za-z0-9_.\-]+")


def fast_payload(verb: str, path: str, params: Mapping[str, object]) -> str:
    """`signature.payload`, computed directly for the usual case of flat params with plain keys.

    With keys made only of `CGI.escape`-safe characters, ActiveSupport's sort of escaped `k=v`
    pieces is decided by the keys alone (a key never equals another key's prefix followed by `=`),
    and `URI.unescape(CGI.escape(v))` gives `v` back with spaces as `+`. So the canonical query is
    the pieces sorted by `k=`, unescaped values; anything else (arrays, hashes, other keys) takes
    the general path. tests/test_api_auth.py checks both agree on generated params.
    """
    items: list[tuple[str, str]] = []
    for k, v in params.items():
        if k in EXCLUDED_PARAMS:
            continue
        if not isinstance(v, str) or not _SAFE_KEY.fullmatch(k):
            return payload(verb, path, params)
        items.append((k + "=", v))
    items.sort()
    query = "&".join(k + v.replace(" ", "+") for k, v in items)
    return f"{verb.upper()}|{path}|{query}"


class TonceActor(Actor[tuple[str, int]]):
    """Records used tonces in batches: one INSERT … ON CONFLICT DO NOTHING RETURNING per batch."""

    name = "tonces"

    def __init__(self, store: Store, **kw: Any) -> None:
        super().__init__(**kw)
        self.store = store
        self._last_purge = 0.0
        self._touched: dict[str, float] = {}  # access key -> when its last_used_at was last written

    async def handle_batch(self, batch: Sequence[tuple[str, int]]) -> list[Any]:
        now = time.time_ns() // 1_000_000
        unique = list(dict.fromkeys(batch))
        values = ",".join("(?, ?, ?)" for _ in unique)
        args: list[Any] = []
        for ak, tonce in unique:
            args += [ak, tonce, now + 2 * TONCE_WINDOW_MS]
        async with self.store.transaction() as tx:
            rows = await tx.fetch(
                f"INSERT INTO tonces (access_key, tonce, expires_at) VALUES {values} "
                "ON CONFLICT (access_key, tonce) DO NOTHING RETURNING access_key, tonce",
                *args,
            )
            mono = time.monotonic()
            keys = sorted({ak for ak, _ in unique if mono - self._touched.get(ak, -LAST_USED_EVERY) >= LAST_USED_EVERY})
            if keys:  # last use is informative: recorded at most once a minute per key, in this batch's tx
                await tx.execute(
                    f"UPDATE api_tokens SET last_used_at = ? WHERE access_key IN ({','.join('?' * len(keys))})",
                    now, *keys)
                if len(self._touched) > 100_000:
                    self._touched.clear()
                self._touched.update(dict.fromkeys(keys, mono))
            if time.monotonic() - self._last_purge > 10:
                self._last_purge = time.monotonic()
                await tx.execute("DELETE FROM tonces WHERE expires_at < ?", now)
        fresh = {(r["access_key"], int(r["tonce"])) for r in rows}
        out: list[Any] = []
        for item in batch:
            if item in fresh:
                fresh.discard(item)  # a second copy in the same batch is a replay
                out.append(True)
            else:
                out.append(AuthError(2006, f"The tonce {item[1]} has already been used by access key {item[0]}."))
        return out


class Authenticator:
    def __init__(self, keys: ApiKeys, tonces: TonceActor) -> None:
        self.keys = keys
        self.tonces = tonces

    async def authenticate(self, verb: str, path: str, params: Params, remote: str | None,
                           limit: Callable[[str], None] | None = None,
                           route_params: Mapping[str, ParamValue] | None = None) -> Token:
        """The token of a correctly signed request, or an error with Peatio's code.

        `route_params` (``:market`` of ``/tickers/:market``) were part of the params Peatio's Grape
        signed; clients that sign only what they send are accepted too, since the path they signed
        carries the same value. `limit` is called with the access key once the signature is known
        good (it raises RateLimited to refuse).
        """
        access_key = params.get("access_key")
        tonce_s = params.get("tonce")
        signature = params.get("signature")
        if not (isinstance(access_key, str) and isinstance(tonce_s, str) and isinstance(signature, str)) or not (
            access_key and tonce_s and signature
        ):
            raise AuthorizationFailed("API Authorization Failed.")
        token = await self.keys.find(access_key)
        if token is None or token.deleted:
            raise AuthError(2008, f"The access key {access_key[:64]} does not exist.")
        now = time.time_ns() // 1_000_000
        if token.disabled:
            raise AuthError(2009, f"The access key {access_key} is disabled.")
        if token.expired(now):
            raise AuthError(2010, f"The access key {access_key} has expired.")
        if not token.ip_allowed(remote):
            raise AuthorizationFailed("API Authorization Failed: this IP address is not allowed for the key.")
        tonce = check_tonce(tonce_s, now)
        good = verify_signature(token.secret_key, fast_payload(verb, path, params), signature)
        if not good and route_params:
            good = verify_signature(token.secret_key, fast_payload(verb, path, params.merged(route_params)), signature)
        if not good:
            raise AuthError(2005, f"The signature {signature[:128]} is incorrect.")
        if limit is not None:
            limit(access_key)
        await self.tonces.ask((access_key, tonce))
        return token


def require_scope(token: Token, *scopes: str) -> None:
    if not any(token.allows(s) for s in scopes):
        raise AuthError(2011, f"Requested API is out of access key scopes ({' or '.join(scopes)}).")

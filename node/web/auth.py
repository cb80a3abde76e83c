"""Signed API requests: Peatio's HMAC scheme, checked in an order that leaks and burns nothing.

Order of checks: the key exists and may be used (enabled, not expired, allowed IP) → the tonce is
within ±30 s → the signature is right → only then is the tonce burnt (so a forged request cannot
use up a client's tonces) → the key's rate limit (after the signature, so that nobody without the
secret can exhaust a client's allowance) → the tonce is burnt → the scope covers the endpoint. The
replay memory lives in the store (node/tonces.py), so it survives restarts and is shared by every
node; a small actor batches its writes, and order submissions burn theirs in the account actor's
own transaction instead (one commit per order, not two).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from node.actors.runtime import Actor
from node.apikeys import ApiKeys, Token
from node.clock import now_ms
from node.errors import AuthorizationFailed, ExchangeError, TonceReused
from node.store import Store
from node.tonces import Tonce, TonceBook
from node.web.params import Params, ParamValue
from node.web.signature import EXCLUDED_PARAMS, check_tonce, payload, verify_signature


class AuthError(ExchangeError):
    status = 401

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


_SAFE_KEY = re.compile(r"[A-Za-z0-9_.\-]+")
_ORDERS: dict[tuple[str, ...], tuple[str, ...] | None] = {}  # a request's key tuple -> signed keys in order
_ORDERS_MAX = 1024  # distinct key sets remembered (clients send few; junk ones are only ever recomputed)


def _signed_order(keys: tuple[str, ...]) -> tuple[str, ...] | None:
    """The keys that are signed, in canonical order; None if one of them is not `CGI.escape`-safe."""
    order = _ORDERS.get(keys, ())
    if order == ():
        safe = [k for k in keys if k not in EXCLUDED_PARAMS]
        order = tuple(sorted(safe, key=lambda k: k + "=")) if all(_SAFE_KEY.fullmatch(k) for k in safe) else None
        if len(_ORDERS) >= _ORDERS_MAX:
            _ORDERS.clear()
        _ORDERS[keys] = order
    return order


def fast_payload(verb: str, path: str, params: Mapping[str, object]) -> str:
    """`signature.payload`, computed directly for the usual case of flat params with plain keys.

    With keys made only of `CGI.escape`-safe characters, ActiveSupport's sort of escaped `k=v`
    pieces is decided by the keys alone (a key never equals another key's prefix followed by `=`),
    and `URI.unescape(CGI.escape(v))` gives `v` back with spaces as `+`. So the canonical query is
    the pieces sorted by `k=`, unescaped values; anything else (arrays, hashes, other keys) takes
    the general path. The order depends on the set of keys only, and a client sends the same few
    sets again and again: it is worked out once per set. tests/test_api_fastpaths.py checks both
    agree on generated params.
    """
    order = _signed_order(tuple(params))
    if order is None:
        return payload(verb, path, params)
    pieces = []
    for k in order:
        v = params[k]
        if not isinstance(v, str):
            return payload(verb, path, params)
        pieces.append(f"{k}={v.replace(' ', '+')}" if " " in v else f"{k}={v}")
    return f"{verb.upper()}|{path}|{'&'.join(pieces)}"


class TonceActor(Actor[Tonce]):
    """Burns the tonces of signed requests in batches: one transaction per batch (see TonceBook)."""

    name = "tonces"

    def __init__(self, store: Store, book: TonceBook | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.store = store
        self.book = book or TonceBook()

    async def handle_batch(self, batch: Sequence[Tonce]) -> list[Any]:
        async with self.store.transaction() as tx:
            fresh = await self.book.burn(tx, batch)
        return [True if ok else TonceReused(*item) for item, ok in zip(batch, fresh, strict=True)]


class Authenticator:
    def __init__(self, keys: ApiKeys, tonces: TonceActor) -> None:
        self.keys = keys
        self.tonces = tonces

    async def authenticate(self, verb: str, path: str, params: Params, remote: str | None,
                           limit: Callable[[str], None] | None = None,
                           route_params: Mapping[str, ParamValue] | None = None) -> Token:
        """The token of a correctly signed request, its tonce burnt, or an error with Peatio's code."""
        token, tonce = await self.verify(verb, path, params, remote, limit, route_params)
        await self.burn(tonce)
        return token

    async def burn(self, tonce: Tonce) -> None:
        """Record the tonce as used; TonceReused (2006) if it was used before."""
        await self.tonces.ask(tonce)

    async def verify(self, verb: str, path: str, params: Params, remote: str | None,
                     limit: Callable[[str], None] | None = None,
                     route_params: Mapping[str, ParamValue] | None = None) -> tuple[Token, Tonce]:
        """The token of a correctly signed request and its tonce, *not yet burnt*: the caller burns it
        (with `burn`, or inside its own transaction, as order submissions do) before acting.

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
        now = now_ms()
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
        return token, (access_key, tonce)


def require_scope(token: Token, *scopes: str) -> None:
    if not any(token.allows(s) for s in scopes):
        raise AuthError(2011, f"Requested API is out of access key scopes ({' or '.join(scopes)}).")

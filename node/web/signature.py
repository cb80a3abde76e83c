"""Peatio's API v2 request signature, tonce window and websocket challenge, bit for bit.

Peatio signed ``"<VERB>|<path>|<query>"`` with HMAC-SHA256, where ``<query>`` was built in Ruby as::

    hash = params.select { |k, v| !%w(route_info signature format).include?(k) }
    URI.unescape(hash.to_param)        # ActiveSupport Hash#to_query, then %XX decoded again

So the exact rules (all reproduced by :func:`canonical_query`) are those of ActiveSupport's ``to_query``
on Ruby 2.1/2.2, the versions Peatio ran in 2014-2015:

* every ``k=v`` is first rendered *escaped* (``CGI.escape``: all but ``A-Za-z0-9_.-`` as ``%XX``,
  space as ``+``), and the pieces of each hash are **sorted as escaped strings**, then joined by ``&``;
* an array renders its elements in order under ``key[]``; a hash element of an array is itself sorted,
  so ``orders[][price]=…&orders[][side]=…&orders[][volume]=…`` repeats once per order, in order;
  a nested hash renders as ``a[b]=c``; empty arrays/hashes are left out;
* finally ``URI.unescape`` decodes every ``%XX`` but leaves ``+`` alone: values come out unescaped,
  spaces as ``+`` (and a literal ``+`` is also ``+``).

For ordinary keys sorting the escaped pieces is sorting by key.  It differs only for keys with characters
below ``=`` (0x3D), e.g. ``a-b=…`` sorts *before* ``a=…``; we keep Ruby's order since clients ported from
Ruby sign that way.

Do better than Peatio: compare signatures in constant time, check the signature before burning the tonce
(the caller's job), refuse a malformed tonce instead of reading it as 0.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Mapping
from urllib.parse import unquote

from node.apikeys import KEY_ALPHABET, KEY_LENGTH, generate_key
from node.errors import ExchangeError
from node.tonces import TONCE_WINDOW_MS
from node.web.params import ParamError

__all__ = [
    "EXCLUDED_PARAMS",
    "KEY_ALPHABET",
    "KEY_LENGTH",
    "TONCE_WINDOW_MS",
    "TonceOutOfWindow",
    "canonical_query",
    "check_tonce",
    "generate_challenge",
    "generate_key",
    "payload",
    "sign",
    "to_query",
    "verify_signature",
    "verify_ws_answer",
    "ws_answer",
]

EXCLUDED_PARAMS = frozenset({"signature", "format"})
"""Params Peatio left out of the signed query (``format`` comes from a ``.json`` path suffix)."""

_TONCE_RE = re.compile(r"[0-9]{1,16}")  # ASCII digits only (str.isdigit would accept "١٢٣")
_SAFE_BYTES = frozenset((string.ascii_letters + string.digits + "_.-").encode("ascii"))


class TonceOutOfWindow(ExchangeError):
    """Tonce too far from the server clock: Peatio error 2007, message carrying the server time in ms.

    The wording is Peatio's own, and bots parse it (``split()[2]`` is the tonce, the last word the
    server time) to correct their clock, so keep it exactly.
    """

    code = 2007
    status = 401

    def __init__(self, server_time_ms: int, tonce: int) -> None:
        super().__init__(f"The tonce {tonce} is invalid, current timestamp is {server_time_ms}.")
        self.server_time_ms = server_time_ms
        self.tonce = tonce


# -------------------------------------------------------------------------------------- canonical query


def _cgi_escape(text: str) -> str:
    """Ruby 2.1 ``CGI.escape`` (unlike Python's ``quote_plus`` it escapes ``~``): sorting depends on it."""
    out: list[str] = []
    for byte in text.encode("utf-8"):
        if byte in _SAFE_BYTES:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _scalar(value: object) -> str:
    """Ruby's ``to_param.to_s`` for the scalar types a handler may pass in."""
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def _render(value: object, key: str) -> str:
    """ActiveSupport ``value.to_query(key)``: escaped, hashes sorted, arrays in order."""
    if isinstance(value, Mapping):
        return _render_hash(value, key)
    if isinstance(value, list | tuple):
        return "&".join(piece for piece in (_render(v, f"{key}[]") for v in value) if piece)
    return f"{_cgi_escape(key)}={_cgi_escape(_scalar(value))}"


def _render_hash(params: Mapping[str, object], namespace: str | None) -> str:
    pieces = [
        _render(value, f"{namespace}[{key}]" if namespace is not None else str(key))
        for key, value in params.items()
        if not (isinstance(value, Mapping | list | tuple) and len(value) == 0)
    ]
    return "&".join(sorted(pieces))


def to_query(params: Mapping[str, object]) -> str:
    """``params.to_query`` as Rails rendered it: a sorted, escaped form string (a valid request body)."""
    return _render_hash(params, None)


def canonical_query(params: Mapping[str, object]) -> str:
    """The ``<query>`` part of the signed payload: all params but ``signature``/``format``, unescaped.

    Pass every param Peatio's Grape would have had: query merged with body and, for routes with path
    params (``/tickers/:market``), those too.
    """
    kept = {k: v for k, v in params.items() if k not in EXCLUDED_PARAMS}
    return unquote(to_query(kept), encoding="utf-8", errors="strict")


def payload(verb: str, path: str, params: Mapping[str, object]) -> str:
    """``"<VERB>|<path>|<query>"``; ``path`` exactly as sent, without the query string (aiohttp:
    ``request.rel_url.raw_path``), e.g. ``/api/v2/orders.json``."""
    return f"{verb.upper()}|{path}|{canonical_query(params)}"


# ------------------------------------------------------------------------------------------------- HMAC


_KEYED: dict[str, hmac.HMAC] = {}
_KEYED_MAX = 4096  # secrets whose keyed HMAC is kept; past that the cache starts again


def sign(secret: str, message: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``message`` keyed by ``secret`` (Peatio's ``hmac_signature``).

    The HMAC keyed by each secret is made once and copied per message: keying it (OpenSSL's digest
    set-up and the key's pads) costs more than hashing a request's payload."""
    keyed = _KEYED.get(secret)
    if keyed is None:
        if len(_KEYED) >= _KEYED_MAX:
            _KEYED.clear()
        keyed = _KEYED[secret] = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)
    h = keyed.copy()
    h.update(message.encode("utf-8"))
    return h.hexdigest()


def _same_hex(expected: str, given: object) -> bool:
    """Constant-time comparison that also survives non-ASCII or non-str input from the wire."""
    if not isinstance(given, str) or not given.isascii():
        return False
    return hmac.compare_digest(expected, given)


def verify_signature(secret: str, message: str, signature: str) -> bool:
    """Whether ``signature`` is :func:`sign` of ``message``; exact (lowercase) hex, constant time."""
    return _same_hex(sign(secret, message), signature)


def ws_answer(secret: str, access_key: str, challenge: str) -> str:
    """The websocket ``auth`` answer: hex HMAC-SHA256(secret, access_key + challenge)."""
    return sign(secret, access_key + challenge)


def verify_ws_answer(secret: str, access_key: str, challenge: str, answer: str) -> bool:
    """Check a websocket ``auth`` answer in constant time."""
    return _same_hex(ws_answer(secret, access_key, challenge), answer)


# -------------------------------------------------------------------------------------------- tonce, keys


def check_tonce(tonce: str, now_ms: int, window_ms: int = TONCE_WINDOW_MS) -> int:
    """Parse ``tonce`` (ms since epoch) strictly and check it is within ``window_ms`` of ``now_ms``.

    Peatio rejected ``tonce < now - 30000 || tonce > now + 30000``, so exactly ±30 000 ms is still
    accepted.  Garbage (signs, spaces, non-ASCII digits, absurd lengths) is a :class:`ParamError`
    rather than Peatio's silent ``to_i`` -> 0.  The replay check (2006) is the caller's.
    """
    if not isinstance(tonce, str) or not _TONCE_RE.fullmatch(tonce):
        raise ParamError("tonce", "tonce is invalid")
    value = int(tonce)
    if abs(value - now_ms) > window_ms:
        raise TonceOutOfWindow(now_ms, value)
    return value


def generate_challenge() -> str:
    """A websocket challenge, as Peatio's ``SecureRandom.urlsafe_base64(40)``."""
    return secrets.token_urlsafe(40)

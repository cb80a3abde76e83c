"""Request parameters the way Peatio (Rails + Rack + Grape) saw them.

Peatio's API read its params from the query string *merged with* the request body, for every verb:
existing clients send GET params in a form body (``yunbi``) and POST params in the query string, and the
request signature is computed over that merged set.  So the exchange must decode exactly as Rack did,
or signatures stop matching.

Rules (Rack 1.x/2.x ``parse_nested_query`` + ``Rack::Request#params``), with a few deliberate hardenings:

* Pairs are split on ``&`` only (Rack 1/2 also split on ``;``; Rack 3 and every client do not).
  ``+`` is a space, ``%XX`` a byte; the decoded bytes must be UTF-8.  A pair without ``=`` has the value
  ``""`` (Rack: nil, which Rails renders as ``k=``, the same thing in a signature).  A name whose key part
  is empty (``=x``, ``[]=x``) is ignored, as Rack ignores it.
* ``k=v`` sets a scalar; a repeated plain key: the last one wins.
* ``ids[]=1&ids[]=2`` -> ``["1", "2"]``;  ``a[b]=c`` -> ``{"b": "c"}`` (nests further: ``a[b][c]``).
* ``orders[][side]=buy&orders[][price]=1&orders[][side]=sell`` -> a list of dicts: a sub-key lands in the
  last element unless that element already has it, in which case a new element starts.
* Query first, then the body; the body overrides a top-level key of the query (``GET.merge(POST)``,
  a shallow merge: a body ``orders[]`` list replaces a query one, it is not appended to).
* A JSON object body (``application/json``) is merged the same way, values turned into the strings a
  form would have carried: numbers keep their literal text (``2955.0`` stays ``"2955.0"``), booleans
  become ``"true"``/``"false"``, null ``""``.
* Hardenings (each a :class:`ParamError`, i.e. HTTP 400 / code 1001, naming the param): malformed
  percent-encoding, invalid UTF-8, a name used both as scalar and as array/hash (Rack silently kept the
  last shape, which makes a signature ambiguous), more than :data:`MAX_PARAMS` params, a body over
  :data:`MAX_BODY_BYTES`, nesting deeper than :data:`MAX_DEPTH`, an unsupported body content type, and
  whatever `node.web.inputs` refuses in a name or value (control characters such as NUL, over-long text).

Give the *raw* (still percent-encoded) query string: with aiohttp that is
``request.rel_url.raw_query_string``, not ``request.query_string`` (which yarl has already decoded).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypeAlias, overload
from urllib.parse import unquote_to_bytes

from node.errors import InvalidParameter
from node.web.inputs import check_name, check_text

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "MAX_PARAMS",
    "ParamError",
    "ParamValue",
    "Params",
    "parse_form",
    "parse_params",
]

#: A decoded parameter: a string, a list (of strings or of dicts), or a dict (``a[b]=c``).
ParamValue: TypeAlias = str | list["ParamValue"] | dict[str, "ParamValue"]

MAX_PARAMS = 1000
"""Most ``k=v`` pairs (query + body, or JSON leaves) in one request: bounds parsing work."""
MAX_BODY_BYTES = 64 * 1024
"""Largest body parsed for params; an order batch is a few KiB at most."""
MAX_DEPTH = 8
"""Deepest bracket nesting (``a[b][c]…``); Peatio's API never goes past two levels."""

_KEY_RE = re.compile(r"[\[\]]*([^\[\]]+)\]*")  # Rack: %r(\A[\[\]]*([^\[\]]+)\]*)
_ARRAY_OF_HASH_RE = re.compile(r"\[\]\[([^\[\]]+)\]")  # Rack: %r(^\[\]\[([^\[\]]+)\]$)
_ARRAY_OF_ANY_RE = re.compile(r"\[\](.+)")  # Rack: %r(^\[\](.+)$)
_BAD_PERCENT_RE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_INT_RE = re.compile(r"-?[0-9]{1,18}")

_FORM_TYPES = frozenset({"", "application/x-www-form-urlencoded"})
_JSON_TYPES = frozenset({"application/json"})


class ParamError(InvalidParameter):
    """A bad request parameter; the API answers HTTP 400 ``{"error":{"code":1001,"message":…}}``.

    An :class:`~node.errors.InvalidParameter`, so the API's generic error handler renders it; ``field``
    is always set here (the param's name, or ``params``/``body`` for request-wide limits).
    """

    code = 1001
    status = 400
    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)

    def __repr__(self) -> str:
        return f"ParamError(field={self.field!r}, message={self.message!r})"


def _shape(value: object) -> str:
    if isinstance(value, str):
        return "a scalar"
    if isinstance(value, list):
        return "an array"
    return "a hash"


def _conflict(name: str, existing: object, wanted: str) -> ParamError:
    return ParamError(name, f"{name} is used both as {_shape(existing)} and as {wanted}")


# --------------------------------------------------------------------------------------------- decoding


def _printable_raw(raw: bytes) -> str:
    """A raw (undecodable) name, made safe and short enough to quote in an error message."""
    return raw[:64].decode("ascii", "backslashreplace")


def _decode_component(raw: bytes, field: str | None) -> str:
    """``application/x-www-form-urlencoded`` decoding, strict where Python's stdlib is lenient."""
    name = field if field is not None else _printable_raw(raw)
    if _BAD_PERCENT_RE.search(raw):
        raise ParamError(name, f"{name} has malformed percent-encoding")
    try:
        text = unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise ParamError(name, f"{name} is not valid UTF-8") from None
    return _checked(field, text)


def _checked(field: str | None, text: str) -> str:
    """The edge's text check (node.web.inputs) as a ParamError: a name when `field` is None."""
    try:
        return check_name(text) if field is None else check_text(field, text)
    except InvalidParameter as e:
        raise ParamError(e.field or "params", e.message) from None


def _split_pairs(data: bytes) -> list[bytes]:
    pairs = [p for p in data.split(b"&") if p]
    if len(pairs) > MAX_PARAMS:
        raise ParamError("params", f"too many parameters (max {MAX_PARAMS})")
    return pairs


# ---------------------------------------------------------------------------------- Rack nested params


def _has_key(hash_: dict[str, ParamValue], key: str) -> bool:
    """Rack 2 ``params_hash_has_key?``: does ``key`` (possibly ``a][b``) already exist in ``hash_``?"""
    if "[]" in key:
        return False
    node: ParamValue = hash_
    for part in re.split(r"[\[\]]+", key):
        if part == "":
            continue
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _normalize(params: dict[str, ParamValue], name: str, value: str, full: str, depth: int) -> None:
    """Rack's ``normalize_params``: store ``value`` under the bracketed ``name`` in ``params``."""
    if depth > MAX_DEPTH:
        raise ParamError(full, f"{full} is nested too deeply (max {MAX_DEPTH} levels)")
    m = _KEY_RE.match(name)
    if m is None:  # nothing but brackets: Rack drops it at the top, we refuse it inside a structure
        if depth == 0:
            return
        raise ParamError(full, f"{full} is not a valid parameter name")
    key, after = m.group(1), name[m.end() :]

    if after == "" or after == "[":
        slot = key if after == "" else name
        existing = params.get(slot)
        if existing is not None and not isinstance(existing, str):
            raise _conflict(full, existing, "a scalar")
        params[slot] = value
        return

    if after == "[]":
        lst = params.setdefault(key, [])
        if not isinstance(lst, list) or (lst and not isinstance(lst[-1], str)):
            raise _conflict(full, lst if not isinstance(lst, list) else lst[-1], "an array of scalars")
        lst.append(value)
        return

    child = _ARRAY_OF_HASH_RE.fullmatch(after) or _ARRAY_OF_ANY_RE.fullmatch(after)
    if child is not None:
        child_key = child.group(1)
        lst = params.setdefault(key, [])
        if not isinstance(lst, list) or (lst and not isinstance(lst[-1], dict)):
            raise _conflict(full, lst if not isinstance(lst, list) else lst[-1], "an array of hashes")
        last = lst[-1] if lst else None
        if isinstance(last, dict) and not _has_key(last, child_key):
            _normalize(last, child_key, value, full, depth + 1)
        else:  # the sub-key repeats (or the list is empty): a new element starts
            element: dict[str, ParamValue] = {}
            _normalize(element, child_key, value, full, depth + 1)
            lst.append(element)
        return

    sub = params.setdefault(key, {})
    if not isinstance(sub, dict):
        raise _conflict(full, sub, "a hash")
    _normalize(sub, after, value, full, depth + 1)


def parse_form(data: bytes | str) -> dict[str, ParamValue]:
    """Decode one ``application/x-www-form-urlencoded`` string (a query string or a form body)."""
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError:
            raise ParamError("params", "query string is not valid UTF-8") from None
    params: dict[str, ParamValue] = {}
    for pair in _split_pairs(data):
        raw_name, _, raw_value = pair.partition(b"=")
        name = _decode_component(raw_name, None)
        value = _decode_component(raw_value, name)
        _normalize(params, name, value, name, 0)
    return params


# ----------------------------------------------------------------------------------------- JSON bodies


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a number")


class _Counter:
    """Counts JSON leaves so a JSON body obeys the same :data:`MAX_PARAMS` as a form body."""

    def __init__(self) -> None:
        self.n = 0

    def tick(self) -> None:
        self.n += 1
        if self.n > MAX_PARAMS:
            raise ParamError("params", f"too many parameters (max {MAX_PARAMS})")


def _from_json(value: Any, name: str, depth: int, counter: _Counter) -> ParamValue:
    """Turn a decoded JSON value into the strings/lists/dicts a form body would have produced."""
    if depth > MAX_DEPTH:
        raise ParamError(name, f"{name} is nested too deeply (max {MAX_DEPTH} levels)")
    if isinstance(value, str):  # strings, and numbers kept as their literal text (parse_int/parse_float)
        counter.tick()
        return _checked(name, value)
    if value is True or value is False:
        counter.tick()
        return "true" if value else "false"
    if value is None:
        counter.tick()
        return ""
    if isinstance(value, dict):
        return {_checked(None, k): _from_json(v, f"{name}[{k}]", depth + 1, counter) for k, v in value.items()}
    if isinstance(value, list):
        items = [_from_json(v, f"{name}[]", depth + 1, counter) for v in value]
        if any(isinstance(i, list) for i in items):
            raise ParamError(name, f"{name} is an array of arrays, which is not supported")
        if items and len({isinstance(i, str) for i in items}) > 1:
            raise ParamError(name, f"{name} mixes scalars and hashes")
        return items
    # json.loads produces nothing else; kept so a future parser hook cannot slip a float or int through.
    raise ParamError(name, f"{name} has an unsupported JSON value")


def _parse_json(body: bytes) -> dict[str, ParamValue]:
    try:
        doc = json.loads(
            body.decode("utf-8"),
            parse_int=str,
            parse_float=str,
            parse_constant=_reject_constant,
        )
    except UnicodeDecodeError:
        raise ParamError("body", "JSON body is not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise ParamError("body", f"JSON body is malformed: {exc}") from None
    if not isinstance(doc, dict):
        raise ParamError("body", "JSON body must be an object")
    counter = _Counter()
    return {_checked(None, k): _from_json(v, k, 0, counter) for k, v in doc.items()}


# ----------------------------------------------------------------------------------------- entry point


def parse_params(query_string: str | bytes, body: bytes, content_type: str) -> Params:
    """Query string merged with the body (body wins on a top-level key), as Peatio's Grape saw it.

    ``content_type`` is the request's Content-Type header ("" if absent).  An empty body is ignored
    whatever its type; a non-empty one must be a form (or untyped, which Rack read as a form) or JSON.
    """
    if len(body) > MAX_BODY_BYTES:
        raise ParamError("body", f"request body too large (max {MAX_BODY_BYTES} bytes)")
    merged = parse_form(query_string)
    if not body:
        return Params(merged)

    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in _FORM_TYPES:
        from_body = parse_form(body)
    elif media_type in _JSON_TYPES or media_type.endswith("+json"):
        from_body = _parse_json(body)
    else:
        raise ParamError("body", f"unsupported content type {media_type!r}")

    query_count = _count_leaves(merged)
    if query_count + _count_leaves(from_body) > MAX_PARAMS:
        raise ParamError("params", f"too many parameters (max {MAX_PARAMS})")
    for key, value in from_body.items():
        existing = merged.get(key)
        if existing is not None and _shape(existing) != _shape(value):
            raise _conflict(key, existing, _shape(value))
        merged[key] = value
    return Params(merged)


def _count_leaves(value: ParamValue | Mapping[str, ParamValue]) -> int:
    if isinstance(value, str):
        return 1
    if isinstance(value, list):
        return sum(_count_leaves(v) for v in value)
    return sum(_count_leaves(v) for v in value.values())


# ------------------------------------------------------------------------------------------------ Params


class Params(Mapping[str, ParamValue]):
    """Read-only decoded params, with typed getters that raise :class:`ParamError` in Peatio's words."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, ParamValue] | None = None) -> None:
        self._data: dict[str, ParamValue] = dict(data) if data is not None else {}

    def __getitem__(self, key: str) -> ParamValue:
        return self._data[key]

    # The dict's own: Mapping's would go through __getitem__ and a KeyError for every absent key
    # (`"signature" in params` on each public request).
    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Params({self._data!r})"

    def merged(self, extra: Mapping[str, ParamValue]) -> Params:
        """A copy with ``extra`` added on top, e.g. path params (Grape merged ``:market`` of
        ``/tickers/:market`` into the params it signed)."""
        return Params({**self._data, **extra})

    @overload
    def get_str(self, name: str, required: Literal[True], *, max_len: int | None = ...) -> str: ...
    @overload
    def get_str(self, name: str, required: bool = ..., *, max_len: int | None = ...) -> str | None: ...

    def get_str(self, name: str, required: bool = False, *, max_len: int | None = 256) -> str | None:
        """A scalar param; ``None`` when absent and optional.  Arrays/hashes are refused, as are values
        longer than ``max_len`` characters (``None``: no limit), so a handler never sees surprises."""
        value = self._data.get(name)
        if value is None:
            if required:
                raise ParamError(name, f"{name} is missing")
            return None
        if not isinstance(value, str):
            raise ParamError(name, f"{name} is invalid")
        if required and value == "":
            raise ParamError(name, f"{name} is empty")
        if max_len is not None and len(value) > max_len:
            raise ParamError(name, f"{name} is too long (maximum is {max_len} characters)")
        return value

    @overload
    def get_int(
        self, name: str, *, required: Literal[True], min_value: int | None = ..., max_value: int | None = ...
    ) -> int: ...
    @overload
    def get_int(
        self, name: str, *, default: int, min_value: int | None = ..., max_value: int | None = ...
    ) -> int: ...
    @overload
    def get_int(
        self,
        name: str,
        *,
        required: bool = ...,
        default: int | None = ...,
        min_value: int | None = ...,
        max_value: int | None = ...,
    ) -> int | None: ...

    def get_int(
        self,
        name: str,
        *,
        required: bool = False,
        default: int | None = None,
        min_value: int | None = None,
        max_value: int | None = None,
    ) -> int | None:
        """A decimal integer param (ASCII digits, optional ``-``), range-checked with Peatio's message
        ``limit must be in range: 1..1000``.  An absent or empty optional param gives ``default``."""
        raw = self.get_str(name, required=required, max_len=32)
        if raw is None or raw == "":
            return default
        if not _INT_RE.fullmatch(raw):
            raise ParamError(name, f"{name} is invalid")
        value = int(raw)
        if (min_value is not None and value < min_value) or (max_value is not None and value > max_value):
            if min_value is not None and max_value is not None:
                message = f"{name} must be in range: {min_value}..{max_value}"
            elif min_value is not None:
                message = f"{name} must be greater than or equal to {min_value}"
            else:
                message = f"{name} must be less than or equal to {max_value}"
            raise ParamError(name, message)
        return value

    def get_list(self, name: str, *, required: bool = False, max_items: int = 100) -> list[str]:
        """A plain array (``ids[]=1&ids[]=2``); ``[]`` when absent and optional."""
        value = self._data.get(name)
        if value is None:
            if required:
                raise ParamError(name, f"{name} is missing")
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ParamError(name, f"{name} is invalid")
        if len(value) > max_items:
            raise ParamError(name, f"{name} has too many elements (maximum is {max_items})")
        return [v for v in value if isinstance(v, str)]

    def get_dicts(self, name: str, *, required: bool = False, max_items: int = 100) -> list[dict[str, str]]:
        """An array of flat hashes (``orders[][side]=…``), e.g. for ``POST /orders/multi``."""
        value = self._data.get(name)
        if value is None:
            if required:
                raise ParamError(name, f"{name} is missing")
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ParamError(name, f"{name} is invalid")
        if len(value) > max_items:
            raise ParamError(name, f"{name} has too many elements (maximum is {max_items})")
        out: list[dict[str, str]] = []
        for element in value:
            assert isinstance(element, dict)
            flat: dict[str, str] = {}
            for key, v in element.items():
                if not isinstance(v, str):
                    raise ParamError(f"{name}[][{key}]", f"{name}[][{key}] is invalid")
                flat[key] = v
            out.append(flat)
        return out

    def to_dict(self) -> dict[str, ParamValue]:
        """A shallow copy as a plain dict (e.g. for logging)."""
        return dict(self._data)

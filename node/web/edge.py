"""The edge of a node: bounds on what a hostile client can make it hold, and on what it can make it log.

Connections (`Gate`, in front of aiohttp's protocol): a connection must send complete request
headers within `header_timeout` of opening (and of its first byte after an answer); an idle
keep-alive connection is closed after `keepalive_timeout` (aiohttp's own timer); at most
`max_connections` in all, always below the process's file-descriptor limit (`raise_fd_limit` lifts
the soft limit to the hard one at start), and `max_connections_per_ip` per client address. A new
connection over a cap pushes out the longest-idle connection (not inside a request) of its own
address, or for the total cap of the address that holds the most; only when none is idle is it
answered 503 and closed. So a thousand idle sockets from one address cost that address its own
sockets, and nobody else anything. Each shed or timed-out connection is one short log line, at
most a few per second (`Quiet`). A trusted proxy (`[http] trusted_proxies`) carries many clients'
requests: its connections are capped by `max_connections_per_proxy`, and each client it forwards
by `max_connections_per_ip` for the connections busy with that client's requests (`Gate.claim`,
from node/web/forwarded.py); a request over it is answered 503, the proxy's connection kept.

Bodies (`middleware`): each route has a size limit (API, page forms, and the larger one of routes
marked with `takes_files`), checked against Content-Length before anything is read and again while
the body streams in (aiohttp's `client_max_size`, set per request); a body that has not arrived
within its time limit cuts the connection. Multipart forms are read here (`read_form`): files go to
temporary files on disk as they arrive, text fields are bounded, so memory stays small whatever
arrives. Every form field, query and path parameter then passes `node.web.inputs`.

Logs: `quiet_malformed` turns aiohttp's traceback for each malformed request into one rate-limited
warning line; `SafeFormatter` escapes control characters in every value a log line quotes, so a
`%0a` in a path cannot start a forged line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import struct
import tempfile
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import FileField
from multidict import MultiDict, MultiDictProxy

from node.config import HttpConf
from node.errors import InvalidParameter
from node.logs import Quiet
from node.web.forwarded import TrustedProxies
from node.web.inputs import check_request, shown

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONF = web.AppKey("http_conf", HttpConf)
FD_RESERVE = 64  # descriptors kept for the store, the bus, files and logs: never used by clients
FIELD_MAX_BYTES = 128 * 1024  # a text field of a multipart form (the longest text is 20,000 characters)
MAX_FIELDS = 1000
SHED = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n"


# -- connections ---------------------------------------------------------------------------------------
def raise_fd_limit() -> int:
    """Lift the soft file-descriptor limit to the hard one; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(conf: HttpConf, fd_limit: int) -> int:
    """`max_connections`, lowered so that connections never take the descriptors the node needs."""
    return max(16, min(conf.max_connections, fd_limit - max(FD_RESERVE, fd_limit // 8)))


class Guard(asyncio.Protocol):
    """One client connection: aiohttp's protocol behind a gatekeeper that counts it, times its
    request headers and can push it out while it is idle."""

    __slots__ = ("gate", "inner", "transport", "ip", "busy", "admitted", "timer", "client", "due")

    def __init__(self, gate: Gate, inner: asyncio.Protocol) -> None:
        self.gate = gate
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.busy = False  # inside a request (or a websocket): never pushed out, no header clock
        self.admitted = False
        self.timer: asyncio.TimerHandle | None = None
        self.client: str | None = None  # on a trusted proxy's connection: whose request it carries now
        self.due: float | None = None  # when the headers' clock runs out; None: it is not running

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.gate.admit(self):
            cast(asyncio.Transport, transport).write(SHED)
            transport.close()
            return
        self.admitted = True
        self._clock()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        if not self.busy:
            mine = self.gate.by_ip.get(self.ip)  # `Gate.touch`, inline: once per request
            if mine is not None and self in mine:
                mine.move_to_end(self)
            if self.due is None:
                self._clock()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.due = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.admitted:
            self.admitted = False
            self.gate.release(self)
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # -- what the middleware tells it --
    def begin(self) -> None:
        self.busy = True
        self.due = None  # the timer stays armed: `_late` finds the clock stopped (see `_clock`)

    def end(self) -> None:
        self.busy = False
        mine = self.gate.by_ip.get(self.ip)  # `Gate.touch`, inline: once per request
        if mine is not None and self in mine:
            mine.move_to_end(self)

    def _clock(self) -> None:
        """Start the headers' clock. The timer is lazy: it is armed once and, when it fires, re-armed
        for the clock's current deadline, so a keep-alive connection's requests cost no timer each
        (a loop timer armed and cancelled per request is a few microseconds of a small request)."""
        loop = asyncio.get_running_loop()
        self.due = loop.time() + self.gate.header_timeout
        if self.timer is None:
            self.timer = loop.call_at(self.due, self._late)

    def _late(self) -> None:
        self.timer = None
        due = self.due
        if due is None:  # stopped (inside a request): the next request's first bytes start it again
            return
        loop = asyncio.get_running_loop()
        if due > loop.time():  # restarted since this timer was armed: wait for the new deadline
            self.timer = loop.call_at(due, self._late)
            return
        self.due = None
        if not self.busy and self.transport is not None and not self.transport.is_closing():
            self.gate.quiet.warn(log, "closed a connection from %s: no complete request headers within %d s",
                                 shown(self.ip), self.gate.header_timeout)
            self.gate.stats["header_timeouts"] += 1
            self.transport.close()

    def evict(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Gate:
    """Counts connections per address and in all; admits, pushes out idle ones, or sheds."""

    def __init__(self, conf: HttpConf, fd_limit: int) -> None:
        self.cap = connection_cap(conf, fd_limit)
        self.per_ip = conf.max_connections_per_ip
        self.per_proxy = conf.max_connections_per_proxy
        self.proxies = TrustedProxies(conf.trusted_proxies)
        self.by_client: dict[str, set[Guard]] = {}  # forwarded clients: the proxies' connections busy for them
        self.header_timeout = conf.header_timeout
        self.by_ip: dict[str, OrderedDict[Guard, None]] = {}  # least recently active first
        self.count = 0
        self.quiet = Quiet()
        self.stats = {"shed": 0, "evicted": 0, "header_timeouts": 0, "client_refused": 0}

    def factory(self, server: Callable[[], asyncio.Protocol]) -> Callable[[], Guard]:
        """The protocol factory for `loop.create_server`: aiohttp's protocol behind a Guard."""
        return lambda: Guard(self, server())

    def admit(self, g: Guard) -> bool:
        mine = self.by_ip.get(g.ip)
        cap = self.per_proxy if self.proxies and self.proxies.trusted_peer(g.ip) else self.per_ip
        if mine is not None and len(mine) >= cap:
            why = f"{len(mine)} open from this address (cap {cap})"
            if not self._evict_from(mine, why):
                return self._shed(g, why)
        if self.count >= self.cap:
            why = f"{self.count} open in all (cap {self.cap})"
            busiest = max(self.by_ip.values(), key=len, default=None)
            if busiest is None or not self._evict_from(busiest, why):
                return self._shed(g, why)
        self.by_ip.setdefault(g.ip, OrderedDict())[g] = None
        self.count += 1
        return True

    def _evict_from(self, conns: OrderedDict[Guard, None], why: str) -> bool:
        for victim in conns:
            if not victim.busy:
                self.release(victim)  # counted out now: its descriptor is freed as the close completes
                victim.evict()
                self.stats["evicted"] += 1
                self.quiet.warn(log, "closed an idle connection from %s to make room: %s", shown(victim.ip), why)
                return True
        return False

    def _shed(self, g: Guard, why: str) -> bool:
        self.stats["shed"] += 1
        self.quiet.warn(log, "refused a connection from %s: %s", shown(g.ip), why)
        return False

    def touch(self, g: Guard) -> None:
        mine = self.by_ip.get(g.ip)
        if mine is not None and g in mine:
            mine.move_to_end(g)

    def release(self, g: Guard) -> None:
        self.unclaim(g)
        mine = self.by_ip.get(g.ip)
        if mine is not None and g in mine:
            del mine[g]
            self.count -= 1
            if not mine:
                del self.by_ip[g.ip]

    def claim(self, g: Guard, client: str) -> bool:
        """A trusted proxy's connection `g` carries a request of `client`: counted for that client
        until `unclaim`, within `max_connections_per_ip`. False (a shed request, logged) over it:
        every connection counted is busy with one of the client's requests, so none is pushed out."""
        self.unclaim(g)
        mine = self.by_client.get(client)
        if mine is not None and len(mine) >= self.per_ip:
            self.stats["client_refused"] += 1
            self.quiet.warn(log, "refused a request from %s through proxy %s: %d connections busy for this client "
                            "(cap %d)", shown(client), shown(g.ip), len(mine), self.per_ip)
            return False
        self.by_client.setdefault(client, set()).add(g)
        g.client = client
        return True

    def unclaim(self, g: Guard) -> None:
        if g.client is None:
            return
        mine = self.by_client.get(g.client)
        if mine is not None:
            mine.discard(g)
            if not mine:
                del self.by_client[g.client]
        g.client = None


def guard_of(request: web.BaseRequest) -> Guard | None:
    t = request.transport
    p = t.get_protocol() if t is not None else None
    return p if isinstance(p, Guard) else None


# -- bodies ----------------------------------------------------------------------------------------------
AnyHandler = TypeVar("AnyHandler", bound=Callable[..., Awaitable[Any]])  # pages take (request, actor) too


def takes_files(handler: AnyHandler) -> AnyHandler:
    """Mark a route's handler as one that takes files: the larger body limit and time apply."""
    handler.takes_files = True  # type: ignore[attr-defined]
    return handler


def _route_limits(request: web.Request, conf: HttpConf) -> tuple[int, int]:
    """(size, seconds) allowed for this request's body."""
    if getattr(request.match_info.handler, "takes_files", False):
        return conf.upload_body_max, conf.upload_timeout
    if request.path.startswith("/api/"):
        return conf.api_body_max, conf.body_timeout
    return conf.form_body_max, conf.body_timeout


def too_large(request: web.BaseRequest, limit: int | None = None) -> bool:
    """Is the announced body over the limit (refused before a byte of it is read)?"""
    length = request.content_length
    return length is not None and length > (limit if limit is not None else request.client_max_size)


_body_quiet = Quiet()


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Size and time limits of the body, then the text check of the query and path parameters."""
    conf = request.app.get(CONF) or HttpConf()
    limit, seconds = _route_limits(request, conf)
    api = request.path.startswith("/api/")
    if too_large(request, limit) and (api or request.path.startswith("/static/")):  # pages answer with a page
        raise _too_large(request, limit)
    return await guarded(request, handler, limit, seconds, api)


def api_limits(request: web.Request, handler: Handler, conf: HttpConf) -> tuple[int, int]:
    """`middleware`'s (size, seconds) for a request the API's chain (node/web/app.py) already knows
    to be under `/api/`, with its handler and the configuration at hand; a body announced over
    the size is refused here, as `middleware` refuses it."""
    if getattr(handler, "takes_files", False):
        limit, seconds = conf.upload_body_max, conf.upload_timeout
    else:
        limit, seconds = conf.api_body_max, conf.body_timeout
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(request, limit)
    return limit, seconds


def _too_large(request: web.Request, limit: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length or 0,
                                         headers={"Connection": "close"})


async def guarded(request: web.Request, handler: Handler, limit: int, seconds: int, api: bool) -> web.StreamResponse:
    """The handler, with the connection marked busy (never pushed out, no header clock) and the body
    given `seconds` to arrive and `limit` bytes; an API request's query and path parameters are
    checked first (pages check theirs inside the sessions' middleware, to answer a page)."""
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    guard = protocol if isinstance(protocol, Guard) else None
    if guard is not None:
        guard.begin()
    late: list[bool] = []
    watchdog: asyncio.TimerHandle | None = None
    if request.body_exists and not request.content.is_eof():
        def cut() -> None:
            if not request.content.is_eof() and request.transport is not None:
                late.append(True)
                _body_quiet.warn(log, "closed a connection from %s: body of %s %s not received within %d s",
                                 shown(request.remote or ""), request.method, shown(request.path), seconds)
                request.transport.close()
        watchdog = asyncio.get_running_loop().call_later(seconds, cut)
    try:
        if api:
            check_request(request)
        # What `request.clone(client_max_size=limit)` gives the handler, without copying the request
        # (a clone rebuilds the message and its headers: ~10 us, a sixth of a small API request's cost)
        request._client_max_size = limit
        return await handler(request)
    except Exception:
        if late:  # the client was too slow; nobody is left to answer
            raise web.HTTPRequestTimeout() from None
        raise
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if guard is not None:
            guard.end()


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """The request's form, read within its limits and checked field by field (cached by aiohttp:
    later `request.post()` calls return it). Malformed input is a 400, never a 500."""
    try:
        if request.content_type == "multipart/form-data":
            form = await _multipart(request)
        else:
            form = await request.post()
    except (web.HTTPException, InvalidParameter):
        raise
    except (ValueError, LookupError, HttpProcessingError, AssertionError) as e:
        raise InvalidParameter(f"the form could not be read ({shown(str(e) or type(e).__name__, 80)})", "body") from None
    check_request(request, form)
    return form


async def _multipart(request: web.Request) -> MultiDictProxy[Any]:
    """aiohttp's multipart reading, with each text field bounded in memory and files on disk."""
    limit = request.client_max_size
    out: MultiDict[Any] = MultiDict()
    reader = await request.multipart()
    loop = asyncio.get_running_loop()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise InvalidParameter("nested multipart forms are not supported", "body")
        if part.name is None:
            raise InvalidParameter("a form field has no name", "body")
        if len(out) >= MAX_FIELDS:
            raise InvalidParameter(f"too many form fields (max {MAX_FIELDS})", "body")
        if part.filename is not None:
            tmp = tempfile.TemporaryFile()
            try:
                while chunk := await part.read_chunk(64 * 1024):
                    if request.content.total_bytes > limit:
                        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content.total_bytes)
                    await loop.run_in_executor(None, tmp.write, chunk)
                await loop.run_in_executor(None, tmp.seek, 0)
            except BaseException:
                tmp.close()
                raise
            ctype = part.headers.get("Content-Type", "application/octet-stream")
            out.add(part.name, FileField(part.name, part.filename, tmp, ctype, part.headers))  # type: ignore[arg-type]
        else:
            data = bytearray()
            while chunk := await part.read_chunk(16 * 1024):
                data += chunk
                if len(data) > FIELD_MAX_BYTES:
                    raise InvalidParameter(f"{shown(part.name)} is too long", shown(part.name))
            try:
                out.add(part.name, data.decode(part.get_charset("utf-8")))
            except UnicodeDecodeError:
                raise InvalidParameter(f"{shown(part.name)} is not valid text (UTF-8)", shown(part.name)) from None
    form = MultiDictProxy(out)
    request._post = form  # aiohttp's cache of the parsed form: request.post() returns this from now on
    return form


async def read_text_fields(request: web.Request) -> None:
    """For pages: read and check the form of a POST (a no-op for other requests)."""
    if request.method == "POST" and request.content_type in ("", "application/x-www-form-urlencoded",
                                                             "multipart/form-data"):
        await read_form(request)


# -- logs ------------------------------------------------------------------------------------------------
class SafeFormatter(logging.Formatter):
    """Escapes control characters in the values a log line quotes (its %-arguments): a client's
    `\\n` or `\\r` shows as `\\n`, never as the start of a forged line."""

    def format(self, record: logging.LogRecord) -> str:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(_escape(a) for a in args) if isinstance(record.args, tuple) else _escape(record.args)
        return super().format(record)


def _escape(value: Any) -> Any:
    if isinstance(value, str) and any(c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029" for c in value):
        return value.encode("unicode_escape").decode("ascii")
    return value


class _MalformedFilter(logging.Filter):
    """aiohttp logs each malformed request with a traceback at ERROR; one warning line instead."""

    def __init__(self) -> None:
        super().__init__()
        self.quiet = Quiet()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or not str(record.msg).startswith("Error handling request"):
            return True
        if not self.quiet.allow():
            return False
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = "malformed request from %s: %s %s"
        record.args = (shown(str(remote)), type(exc).__name__, shown(str(getattr(exc, "message", "")), 80))
        if self.quiet.dropped:
            record.msg += " (%d more not logged)"
            record.args = (*record.args, self.quiet.dropped)
            self.quiet.dropped = 0
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return True


def quiet_malformed() -> None:
    """Install the filter on aiohttp's server logger (once per process)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedFilter) for f in logger.filters):
        logger.addFilter(_MalformedFilter())


def safe_logging() -> None:
    """Every handler of the root logger escapes quoted values (called once the logging is set up)."""
    for h in logging.getLogger().handlers:
        fmt = h.formatter
        h.setFormatter(SafeFormatter(fmt._fmt if fmt else None, fmt.datefmt if fmt else None))
    quiet_malformed()


# -- websocket frames ------------------------------------------------------------------------------------
class MaskCheck:
    """Follows the frame boundaries of a client's websocket stream and says when a frame is not
    masked (RFC 6455 §5.1: the server must then close the connection, §7.4.1: code 1002)."""

    __slots__ = ("buf", "skip")

    def __init__(self) -> None:
        self.buf = b""  # an incomplete frame header
        self.skip = 0  # payload bytes of the current frame still to come

    def feed(self, data: bytes) -> int | None:
        """None while every frame is masked; else how many leading bytes of `data` belong to the
        frames before the unmasked one."""
        pos, n = 0, len(data)
        while pos < n:
            if self.skip:
                step = min(self.skip, n - pos)
                self.skip -= step
                pos += step
                continue
            head = self.buf + data[pos:pos + 14]
            if len(head) < 2:
                self.buf, pos = head, n
                continue
            if not head[1] & 0x80:
                return max(0, pos - len(self.buf))
            size, need = head[1] & 0x7F, 2
            if size == 126:
                need = 4
            elif size == 127:
                need = 10
            need += 4  # the masking key
            if len(head) < need:
                self.buf, pos = head, n
                continue
            if size == 126:
                size = struct.unpack_from("!H", head, 2)[0]
            elif size == 127:
                size = struct.unpack_from("!Q", head, 2)[0]
            pos += need - len(self.buf)
            self.buf = b""
            self.skip = size
        return None


class MaskedOnly:
    """aiohttp's websocket reader behind a `MaskCheck`: an unmasked frame closes with 1002."""

    def __init__(self, inner: Any, transport: asyncio.Transport, check: MaskCheck) -> None:
        self.inner = inner
        self.transport = transport
        self.check = check
        self.bad = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.bad:
            return False, b""
        good = self.check.feed(bytes(data))
        if good is None:
            result: tuple[bool, bytes] = self.inner.feed_data(data)
            return result
        if good:
            self.inner.feed_data(data[:good])  # the frames before the unmasked one are read as usual
        self.refuse()
        return False, b""

    def feed_eof(self) -> None:
        self.inner.feed_eof()

    def refuse(self) -> None:
        self.bad = True
        reason = b"unmasked client frame"
        self.transport.write(bytes((0x88, 2 + len(reason))) + struct.pack("!H", 1002) + reason)
        self.transport.close()


class WebSocketResponse(web.WebSocketResponse):
    """aiohttp's websocket response that refuses unmasked client frames (aiohttp accepts them)."""

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        proto: Any = request.protocol
        check = MaskCheck()
        early = check.feed(bytes(proto._message_tail)) is None  # frames sent along with the handshake
        super()._post_start(request, protocol, writer)
        transport = request.transport
        if transport is None:
            return
        masked = MaskedOnly(proto._payload_parser, transport, check)
        proto._payload_parser = masked
        if not early:
            masked.refuse()


__all__ = ["CONF", "Gate", "Guard", "MaskCheck", "Quiet", "SafeFormatter", "WebSocketResponse", "api_limits",
           "connection_cap", "guard_of", "guarded", "middleware", "quiet_malformed", "raise_fd_limit", "read_form", "read_text_fields",
           "safe_logging", "takes_files"]

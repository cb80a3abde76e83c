"""The `/ws` route: the HTTP upgrade with its limits, the page session's same-origin rule, and the
reading loop of one connection."""

from __future__ import annotations

import contextlib
import logging
import socket
import time

from aiohttp import WSMsgType, web

from node.i18n import Translator
from node.web.edge import WebSocketResponse as MaskedWebSocketResponse
from node.web.inputs import shown
from node.web.session import SESSION_KEY, TRANSLATOR_KEY, Session, key_hash
from node.web.ws.client import Client
from node.web.ws.frames import CLOSE_TOO_BIG, frame, ws_frame
from node.web.ws.hub import Hub

log = logging.getLogger(__name__)

PATH = "/ws"


def same_origin(request: web.Request, base_url: str = "") -> bool:
    """The handshake came from a page of this site. Browsers send the page's session cookie with a
    websocket to any site's page (there is no CORS for websockets), so a session is only honoured
    when the `Origin` is the address the browser reached this node at (its Host, with the scheme of
    this connection or, behind a TLS-terminating proxy, the configured public address)."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return False
    host = request.headers.get("Host", "")
    allowed = {f"{request.scheme}://{host}".lower()}
    if request.scheme == "http":
        allowed.add(f"https://{host}".lower())  # TLS ended at a proxy in front of the node
    if base_url:
        parts = base_url.split("/")
        if len(parts) >= 3:
            allowed.add(f"{parts[0]}//{parts[2]}".lower())
    return bool(host) and origin.lower() in allowed



HUB = web.AppKey("ws_hub", Hub)


async def handle(request: web.Request) -> web.StreamResponse:
    """One websocket connection: read commands until the client goes; all writing is the hub's."""
    hub = request.app[HUB]
    cfg = hub.cfg
    if len(hub.clients) >= cfg.max_clients:
        return web.Response(status=503, text="too many websocket clients, try again later")
    if hub.per_ip.get(request.remote, 0) >= cfg.max_per_ip:
        hub.quiet.warn(log, "refused a websocket from %s: %d open from this address", shown(request.remote or ""),
                       cfg.max_per_ip)
        return web.Response(status=503, text="too many websocket connections from this address, try again later")
    ws = MaskedWebSocketResponse(autoping=False, autoclose=True, compress=False, timeout=cfg.close_grace,
                               max_msg_size=max(cfg.max_frame * 16, 65536))
    await ws.prepare(request)
    transport = request.transport
    if transport is None:
        return ws
    if cfg.sndbuf is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, cfg.sndbuf)
    c = Client(hub, ws, transport, request.remote)
    session = request.get(SESSION_KEY)
    if isinstance(session, Session) and session.member_id is not None and same_origin(request, hub.ex.config.mail.base_url):
        c.session_member = session.member_id
        c.session_id = key_hash(session.key)
    translate = request.get(TRANSLATOR_KEY)
    c.translate = translate if isinstance(translate, Translator) else None
    hub.add(c)
    c.send(frame({"challenge": c.challenge}))
    try:
        # Read until the connection closes; once the hub has started closing it (slow, idle, bad
        # input), frames still arriving are ignored while the close handshake completes.
        while True:
            msg = await ws.receive()
            c.last_seen = time.monotonic()
            c.unanswered = 0
            t = msg.type
            if c.closing and t in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG):
                continue
            if t is WSMsgType.TEXT:
                data = msg.data
                if len(data) > cfg.max_frame // 4 and len(data.encode()) > cfg.max_frame:
                    reason = f"frame too large: more than {cfg.max_frame} bytes"
                    c.send(frame({"error": {"message": reason}}))
                    hub.close(c, CLOSE_TOO_BIG, reason)
                    continue
                await hub.command(c, data)
            elif t is WSMsgType.BINARY:
                hub.error(c, "binary frames are not supported: send JSON text")
            elif t is WSMsgType.PING:
                c.send(ws_frame(msg.data, 0xA))
            elif t is WSMsgType.PONG:
                pass
            else:  # CLOSE, CLOSING, CLOSED, ERROR (aiohttp has answered or closed already)
                break
    finally:
        hub.forget(c)
        c.done.set()
    return ws


def setup(app: web.Application, hub: Hub) -> None:
    """The hub's route; it is started and stopped with the app, after the market data service."""
    exchange = hub.ex
    app[HUB] = hub

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        await hub.start()
        exchange.auth_changes.listeners.append(hub.on_rights_change)
        yield
        with contextlib.suppress(ValueError):
            exchange.auth_changes.listeners.remove(hub.on_rights_change)
        await hub.stop()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(hub.shutdown)
    app.router.add_get(PATH, handle)


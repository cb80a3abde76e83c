"""The websocket API at `/ws` (docs/websocket.md): Peatio's protocol, plus public and private streams.

`handshake` takes connections in, `commands` reads what clients send, `books` and `streams` turn
events into frames (`frames`), `core` keeps clients and subscriptions, `hub` puts them together.
"""

from node.web.ws.client import WsConfig
from node.web.ws.frames import CLOSE_GOING_AWAY, CLOSE_IDLE, CLOSE_POLICY, CLOSE_SLOW, CLOSE_TOO_BIG
from node.web.ws.handshake import HUB, PATH, handle, same_origin, setup
from node.web.ws.hub import Hub

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_IDLE", "CLOSE_POLICY", "CLOSE_SLOW", "CLOSE_TOO_BIG", "HUB", "PATH", "Hub",
           "WsConfig", "handle", "same_origin", "setup"]

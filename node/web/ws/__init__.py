"""The websocket API at `/ws` (docs/websocket.md); `hub` holds it for now."""

from node.web.ws.hub import (
    CLOSE_GOING_AWAY,
    CLOSE_IDLE,
    CLOSE_POLICY,
    CLOSE_SLOW,
    CLOSE_TOO_BIG,
    HUB,
    PATH,
    Hub,
    WsConfig,
    handle,
    same_origin,
    setup,
)

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_IDLE", "CLOSE_POLICY", "CLOSE_SLOW", "CLOSE_TOO_BIG", "HUB", "PATH", "Hub",
           "WsConfig", "handle", "same_origin", "setup"]

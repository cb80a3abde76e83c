"""The client's address and scheme from a trusted proxy's X-Forwarded-For and X-Forwarded-Proto.

Behind a load balancer every connection comes from the balancer: per-address rate limits would count
all clients together, audit logs would name the balancer, and a request that arrived over TLS looks
like plain HTTP (no `Secure` cookies, no HSTS). `[http] trusted_proxies` names the networks whose
headers are believed. Only when the connection's peer is one of them, the client is the right-most
address of X-Forwarded-For that is not itself a trusted proxy: every proxy appends the address it
saw, so the entries to its left are whatever the client sent and prove nothing. A header that is too
long, or an entry on that walk that is not an IP address, is ignored as a whole (the peer's address
stays). With no trusted proxy (the default) the middleware is not installed and the headers mean
nothing.

A proxy's connections carry many clients' requests, so the per-address connection cap cannot count
them at the TCP level: while a connection carries a forwarded client's request it counts for that
client (`edge.Gate.claim`), and a client with `max_connections_per_ip` busy is answered 503 (the
proxy's connection stays open for others).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from node.errors import Busy

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_HEADER = 1024  # characters of X-Forwarded-For (all its lines); a chain of a few proxies needs far less
MAX_HOPS = 16
PROTOCOLS = ("http", "https")
BUSY = Busy("too many connections are busy with requests from your address: retry in a moment").to_dict()


def _ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack socket's peer ::ffff:10.0.0.1 is 10.0.0.1
    return ip


class TrustedProxies:
    """The networks whose forwarding headers are believed (`[http] trusted_proxies`)."""

    def __init__(self, networks: Sequence[str]) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusted(self, ip: IPAddress | None) -> bool:
        return ip is not None and any(ip in n for n in self.networks)

    def trusted_peer(self, peer: str) -> bool:
        return self.trusted(_ip(peer))

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """The client's address: the peer's, unless a trusted peer forwarded a valid chain."""
        peer_ip = _ip(peer or "")
        if not self.trusted(peer_ip) or not forwarded_for:
            return peer
        joined = ",".join(forwarded_for)
        if len(joined) > MAX_HEADER:
            return peer
        hops = joined.split(",")
        if len(hops) > MAX_HOPS:
            return peer
        client = peer_ip
        for hop in reversed(hops):
            ip = _ip(hop)
            if ip is None:
                return peer
            client = ip
            if not self.trusted(ip):
                break
        return str(client)

    def scheme(self, peer: str | None, proto: str | None, default: str) -> str:
        """`https` or `http` as a trusted peer says it received the request (its own, right-most word)."""
        if proto is None or len(proto) > 64 or not self.trusted(_ip(peer or "")):
            return default
        last = proto.rsplit(",", 1)[-1].strip().lower()
        return last if last in PROTOCOLS else default

    def middleware(self) -> Middleware:
        """Runs first, so that every later middleware and handler sees the client's address in
        `request.remote` and the client's scheme in `request.secure`."""

        from node.web.edge import guard_of  # edge's Gate imports this module

        @web.middleware
        async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
            peer = request.remote
            if not self.trusted(_ip(peer or "")):
                return await handler(request)
            remote = self.client(peer, request.headers.getall("X-Forwarded-For", []))
            protos = request.headers.getall("X-Forwarded-Proto", [])
            scheme = self.scheme(peer, ",".join(protos) if protos else None, request.scheme)
            guard = guard_of(request) if remote and remote != peer else None
            if guard is not None and not guard.gate.claim(guard, remote or ""):
                return web.json_response(BUSY, status=503, headers={"Retry-After": "1"})
            try:
                if remote == peer and scheme == request.scheme:
                    return await handler(request)
                return await handler(request.clone(remote=remote or "", scheme=scheme))
            finally:
                if guard is not None:
                    guard.gate.unclaim(guard)

        return forwarded

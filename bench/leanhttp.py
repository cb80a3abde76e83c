"""A lean HTTP/1.1 client for load generators: keep-alive connections spoken by hand.

A full client such as aiohttp's costs several times the CPU per request of what is sent here, on
the same cores as the nodes under test; its own queueing would then count as the server's latency,
and its CPU would be taken from the server. A request is bytes made once; an answer is read as a
status, the headers asked for, and a body skipped by its Content-Length.
"""

from __future__ import annotations

import asyncio
import re

_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


def post_form(host: str, path: str, body: bytes) -> bytes:
    """A form POST, whole: the request line, the headers and the body."""
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Conn:
    """One keep-alive connection: a request out, one answer back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        return cls(*await asyncio.open_connection(host, port))

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()

    async def exchange(self, request: bytes, header: bytes | None = None) -> tuple[int, str | None]:
        """Send `request`; the answer's status and the value of `header` (lower case), if asked."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        m = _LENGTH.search(head)
        if m:
            await self.reader.readexactly(int(m.group(1)))
        value = None
        if header is not None:
            at = head.lower().find(b"\r\n" + header + b":")
            if at >= 0:
                start = at + len(header) + 3
                value = head[start:head.index(b"\r\n", start)].strip().decode("latin-1")
        return int(head[9:12]), value

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Idle keep-alive connections per address; a connection that broke is dropped, not reused."""

    def __init__(self) -> None:
        self.idle: dict[tuple[str, int], list[Conn]] = {}

    async def exchange(self, host: str, port: int, request: bytes,
                       header: bytes | None = None) -> tuple[int, str | None]:
        idle = self.idle.setdefault((host, port), [])
        while idle and idle[-1].closed:  # closed by the server while idle
            idle.pop()
        c = idle.pop() if idle else await Conn.open(host, port)
        try:
            answer = await c.exchange(request, header)
        except BaseException:
            c.close()
            raise
        idle.append(c)
        return answer

    def close(self) -> None:
        for conns in self.idle.values():
            for c in conns:
                c.close()
        self.idle.clear()

"""A TCP proxy that a test controls, to put a network fault between one node and a service.

- `blackhole()`: bytes stop flowing both ways but every connection stays open, as when a cable
  is pulled or a switch drops packets; `heal()` then delivers what was held back, late. This is
  the fault that lets a stalled node try to commit after it lost its lease.
- `reset()`: every connection is closed at once, and new ones are refused until `heal()`.
"""

from __future__ import annotations

import asyncio
import contextlib


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self.connections = 0

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.heal()
        if self._server is not None:
            self._server.close()
        for a, b in list(self._pipes):
            a.close()
            b.close()

    def url(self, template: str) -> str:
        """`template` with {port} replaced by this proxy's port."""
        return template.format(port=self.port)

    def blackhole(self) -> None:
        self._flowing.clear()

    def reset(self) -> None:
        self._refusing = True
        for a, b in list(self._pipes):
            a.transport.abort()
            b.transport.abort()
        self._pipes.clear()

    def heal(self) -> None:
        self._refusing = False
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        await self._flowing.wait()  # a black hole answers no handshake either
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        pair = (writer, up_writer)
        self._pipes.add(pair)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._pipes.discard(pair)
            for w in pair:
                with contextlib.suppress(Exception):
                    w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()  # held back while cut, delivered late when healed
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

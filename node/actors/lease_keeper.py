"""One lease keeper for what a node runs under leases: markets (node/ownership.py) and account
shards (node/account_shards.py) follow the same rules, so they live here once.

Each tick (`tick`, under `lock`) the keeper
- renews the leases of what runs here. One whose actor was fenced, or whose lease another node
  took, is dropped at once; one the store could not renew for SELF_FENCE of the lease is dropped on
  its own, so it stops before anyone else may start it;
- adopts what this node may run whose lease is free (released, expired, held by a process that is
  gone, or handed to this node): its primary at once, a standby only half a lease after the
  holder's last renewal, so a primary that restarts quickly gets it back, and never before a whole
  lease after its own start what nobody ran yet (its primary may be starting too), nor a lease its
  holder renewed within two ticks. A primary asks every tick: the store's liveness check gives it
  back what a killed process held at once;
- after the tick, outside the lock (`apply_placement`): hands over what runs here whose placement
  was changed since this node took it and names another primary, to that primary if it runs, else
  to the first running standby. What this node took by failover stays: only a new placement moves
  it, so a flapping primary does not drag things back and forth.

The owner says what differs: the lease names, what there is to run, its placement (`Seat`), how an
actor starts, stops at once (`drop`) and is handed over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from node.actors.lease import HANDED_OVER, LeaseHeld, Leases
from node.clock import now_ms
from node.errors import ExchangeError, Fenced

log = logging.getLogger(__name__)

SELF_FENCE = 0.6  # of the lease: unrenewed this long, an actor stops on its own

K = TypeVar("K", bound=Hashable)


class Leased(Protocol):
    fenced: bool


@dataclass(frozen=True)
class Seat:
    """Where the placement puts one thing: its primary, the members standing by for it (in order),
    and the placement's version (it grows at every change)."""

    primary: str | None
    standbys: tuple[str, ...]
    version: int


class LeaseKeeper(Generic[K]):
    def __init__(self, what: str, node: str, leases: Leases, lease_ms: int, running: Mapping[K, Leased], *,
                 name: Callable[[K], str], key: Callable[[str], K | None], keys: Callable[[], Iterable[K]],
                 seat: Callable[[K], Seat | None], member: Callable[[], bool],
                 start: Callable[[K, int], Awaitable[Any]], drop: Callable[[K, str], Awaitable[None]],
                 handover: Callable[[K, str], Awaitable[str]] | None = None,
                 alive: Callable[[], Awaitable[Collection[str]]] | None = None,
                 release_waits: bool = True) -> None:
        self.what = what  # "market", "account shard": for the log
        self.node = node
        self.leases = leases
        self.lease_ms = lease_ms
        self.lease_s = lease_ms / 1000
        self.tick_s = min(1.0, self.lease_s / 5)
        self.running = running
        self.name = name  # the lease's name
        self.key = key  # a lease's name back to what it is for (None: not ours to keep)
        self.keys = keys  # everything there is to run
        self.seat = seat
        self.member = member  # this node is a member of the cluster now
        self._start = start
        self._drop = drop
        self._handover = handover  # release to a node, draining first
        self._alive = alive  # the nodes running now
        # A standby also waits when the lease was released (a clean stop): a primary restarting
        # at once finds what it ran. Without it, what a stopping node released passes on at once.
        self.release_waits = release_waits
        self.last_renewed: dict[K, float] = {}
        self.refusals: dict[K, str] = {}  # why this node does not run it now
        self.claimed_version: dict[K, int] = {}  # its placement's version when this node took it
        self.started_at = now_ms()
        self.lock = asyncio.Lock()  # one tick or operator command at a time
        self._hold_off: dict[K, float] = {}  # released here on purpose: not adopted again soon
        self._placement_note: dict[K, str] = {}  # why a placement change is not applied (logged once)
        self._task: asyncio.Task[None] | None = None

    # -- who may run what -----------------------------------------------------------------------------
    def eligible(self, k: K, lease: Mapping[str, Any] | None) -> str | None:
        """'primary', 'standby' or 'handed' if this node may run it, else None."""
        if not self.member():
            return None
        if lease is not None and lease["owner"] == HANDED_OVER:
            return "handed" if lease["node"] == self.node else None
        seat = self.seat(k)
        if seat is None:
            return None
        if seat.primary == self.node:
            return "primary"
        if self.node in seat.standbys:
            return "standby"
        return None

    async def claim(self, k: K) -> Any:
        """Take the lease (LeaseHeld if a living holder has it) and start the actor here."""
        epoch = await self.leases.acquire(self.name(k))
        try:
            actor = await self._start(k, epoch)
        except BaseException:
            await self.leases.release(self.name(k))
            raise
        self.last_renewed[k] = time.monotonic()
        self.refusals.pop(k, None)
        seat = self.seat(k)
        self.claimed_version[k] = seat.version if seat is not None else 0
        self._placement_note.pop(k, None)
        return actor

    def hold_off(self, k: K) -> None:
        """This node gave it up on purpose: it does not adopt it again for two leases."""
        self._hold_off[k] = time.monotonic() + 2 * self.lease_s
        self.last_renewed.pop(k, None)
        self.claimed_version.pop(k, None)

    def status(self) -> dict[str, Any]:
        return {"running": {str(k): self.leases.epochs.get(self.name(k)) for k in self.running},
                "refusals": {str(k): why for k, why in self.refusals.items()}}

    # -- the loop -------------------------------------------------------------------------------------
    def start(self, tick: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run `tick` every tick (under the lock), then `apply_placement`, from one tick from now."""
        self._task = asyncio.create_task(self._loop(tick), name=f"{self.what} leases")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self, tick: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                async with self.lock:
                    await tick()
                await self.apply_placement()  # outside the lock: a hand-over takes it
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s lease tick failed; trying again", self.what)

    async def read_leases(self) -> dict[K, dict[str, Any]]:
        out: dict[K, dict[str, Any]] = {}
        for r in await self.leases.all():
            k = self.key(str(r["market"]))
            if k is not None:
                out[k] = r
        return out

    async def renew(self) -> None:
        """Renew every lease held here in one statement (Leases.renew_many); drop what was fenced or
        lost, and, when the store does not answer, what has gone unrenewed for SELF_FENCE of the lease."""
        for k in list(self.running):
            if self.running[k].fenced:
                await self.drop(k, "fenced: another node holds a newer epoch")
        held = list(self.running)
        if not held:
            return
        try:
            renewed = await self.leases.renew_many([self.name(k) for k in held])
        except Exception as e:
            for k in held:
                silent = time.monotonic() - self.last_renewed.get(k, 0.0)
                if silent > self.lease_s * SELF_FENCE and k in self.running:
                    await self.drop(k, f"lease not renewed for {silent:.1f} s ({type(e).__name__}): stopping "
                                       "before it can pass to another node")
            return
        now = time.monotonic()
        for k in held:
            if self.name(k) in renewed:
                self.last_renewed[k] = now
            elif k in self.running:
                await self.drop(k, "lease taken over by another node")

    async def drop(self, k: K, why: str) -> None:
        """Stop it here at once (no drain: what is queued is not ours any more)."""
        self.leases.forget(self.name(k))
        self.last_renewed.pop(k, None)
        await self._drop(k, why)

    async def adopt_free(self, leases: Mapping[K, Mapping[str, Any]]) -> None:
        now = now_ms()
        for k in self.keys():
            if k in self.running:
                continue
            lease = leases.get(k)
            role = self.eligible(k, lease)
            if role is None:
                continue
            # Given up here on purpose, it is not taken back soon, unless handed back to this node
            # (a move there and back again: the hold-off left it without an owner for two leases).
            if role != "handed" and self._hold_off.get(k, 0.0) > time.monotonic():
                continue
            if lease is not None and lease["owner"] != HANDED_OVER:
                silent = now - int(lease["renewed_at"])
                theirs = bool(lease["owner"]) and lease["owner"] != self.leases.owner
                if role == "standby" and (theirs or self.release_waits) and silent < self.lease_ms // 2:
                    if theirs and k in self.refusals:  # the holder may have changed since it was noted
                        self.refusals[k] = f"run by node {lease['node']!r}"
                    continue  # give a restarting primary its chance first
                if (role == "standby" and theirs and int(lease["expires_at"]) > now
                        and silent < 2 * self.tick_s * 1000 + 500):
                    self.refusals[k] = f"run by node {lease['node']!r}"
                    continue  # a living holder renews every tick: nothing to ask the store
            if role == "standby" and now - self.started_at < self.lease_ms:
                # This node has just started, and nobody holds it (never run, released, or expired):
                # its primary may be starting too. After a full stop, the first node up took every
                # market and shard it stands by for, leaving them off their primaries.
                continue
            try:
                await self.claim(k)
            except (LeaseHeld, Fenced) as e:
                self.refusals[k] = str(e)
                continue
            log.warning("%s %s adopted by node %s as %s (epoch %s)", self.what, k, self.node, role,
                        self.leases.epochs.get(self.name(k)))

    async def apply_placement(self) -> None:
        """Hand over what runs here whose placement changed since this node took it and names
        another primary."""
        if self._handover is None:
            return
        due = []
        for k in list(self.running):
            seat = self.seat(k)
            if (seat is None or seat.primary is None or seat.primary == self.node
                    or seat.version <= self.claimed_version.get(k, seat.version)):
                continue
            due.append((k, [seat.primary, *seat.standbys]))
        if not due:
            return
        alive = set(await self._alive()) if self._alive is not None else set()
        for k, targets in due:
            to = next((n for n in targets if n in alive and n != self.node), None)
            if to is None:
                note = f"placed on {targets[0]}, which is not running: it stays on {self.node} for now"
            else:
                try:
                    log.warning("%s %s: %s", self.what, k, await self._handover(k, to))
                    self.claimed_version.pop(k, None)
                    self._placement_note.pop(k, None)
                    continue
                except ExchangeError as e:
                    note = f"could not hand it over to {to}: {e.message}"
            if self._placement_note.get(k) != note:
                log.warning("%s %s %s", self.what, k, note)
                self._placement_note[k] = note

"""The lease keeper (node/actors/lease_keeper.py) on real leases in a store, two nodes in one
process, its tick's steps called one by one: the primary adopts at once (and asks again every
tick), a standby only after half a lease of silence and never from a living holder, the deposed
owner drops on its next renewal, an owner that cannot reach the store stops at 60% of the lease,
and a new placement is handed over."""

from __future__ import annotations

import asyncio
from typing import Any

from node.actors.lease import Leases
from node.actors.lease_keeper import LeaseKeeper, Seat
from node.store import Store, open_store

LEASE_MS = 1_000


class Thing:
    fenced = False


class Node:
    def __init__(self, name: str, store: Store, seats: dict[str, Seat], alive: list[str]) -> None:
        self.leases = Leases(store, name, LEASE_MS)
        self.running: dict[str, Thing] = {}
        self.dropped: list[str] = []
        self.handed: list[tuple[str, str]] = []

        async def start(k: str, epoch: int) -> Thing:
            self.running[k] = Thing()
            return self.running[k]

        async def drop(k: str, why: str) -> None:
            self.running.pop(k, None)
            self.dropped.append(why)

        async def handover(k: str, to: str) -> str:
            self.handed.append((k, to))
            return f"{k} handed to {to}"

        async def running_nodes() -> list[str]:
            return alive

        self.keeper: LeaseKeeper[str] = LeaseKeeper(
            "thing", name, self.leases, LEASE_MS, self.running, name=lambda k: f"wallet:{k}",
            key=lambda n: n.split(":", 1)[1] if n.startswith("wallet:") else None, keys=lambda: list(seats),
            seat=seats.get, member=lambda: True, start=start, drop=drop, handover=handover, alive=running_nodes)

    async def adopt(self) -> None:
        await self.keeper.adopt_free(await self.keeper.read_leases())


async def test_primary_first_standby_after_half_a_lease_and_the_deposed_owner_drops(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/keeper.db"
    store, store_b = await open_store(url), await open_store(url)
    seats = {"x": Seat("a", ("b",), 1)}
    a, b = Node("a", store, seats, ["a", "b"]), Node("b", store_b, seats, ["a", "b"])
    try:
        await b.adopt()  # nobody ran it yet: a standby leaves it to the primary for a lease
        assert not b.running
        await a.adopt()
        assert list(a.running) == ["x"] and a.leases.epochs["wallet:x"] == 1

        await a.keeper.renew()
        await b.adopt()  # renewed just now: the standby does not even look
        assert not b.running and "x" not in b.keeper.refusals
        await asyncio.sleep(0.6)
        await b.adopt()  # half a lease of silence, but the holder is not two ticks late yet
        assert not b.running and b.keeper.refusals["x"] == "run by node 'a'"
        await asyncio.sleep(0.5)  # the lease has expired: a is paused, say
        await b.adopt()
        assert list(b.running) == ["x"] and b.leases.epochs["wallet:x"] == 2 and "x" not in b.keeper.refusals

        await a.keeper.renew()  # a wakes: its lease is gone, it stops at once
        assert not a.running and a.dropped == ["lease taken over by another node"]
        await b.keeper.renew()
        await a.adopt()  # the primary asks the store every tick (a killed holder is found at once)
        assert not a.running and "wallet:x is run by node 'b'" in a.keeper.refusals["x"]

        # The placement changes after b took it: b hands it to the primary, which runs.
        seats["x"] = Seat("a", ("b",), 2)
        await b.keeper.apply_placement()
        assert b.handed == [("x", "a")]

        # b loses the store: it keeps the actor for 60% of the lease, then stops it on its own.
        await store_b.close()
        await b.keeper.renew()
        assert list(b.running) == ["x"]
        await asyncio.sleep(0.65)
        await b.keeper.renew()
        assert not b.running and b.dropped[0].startswith("lease not renewed for ")
    finally:
        await store.close()
        await store_b.close()


async def test_one_renewal_for_every_lease_held_and_only_the_lost_one_drops(database_url: str) -> None:
    """Both backends: a node's leases are renewed together, each under its own epoch; when another
    node has taken one of them, only that one is dropped and the others stay renewed."""
    store, store_b = await open_store(database_url), await open_store(database_url)
    seats = {k: Seat("a", ("b",), 1) for k in ("x", "y", "z")}
    a, b = Node("a", store, seats, ["a", "b"]), Node("b", store_b, seats, ["a", "b"])
    try:
        await a.adopt()
        assert sorted(a.running) == ["x", "y", "z"]
        calls = getattr(store, "calls", None)
        before = calls.transactions if calls is not None else 0
        await a.keeper.renew()
        if calls is not None:  # PostgreSQL counts its statements
            assert calls.transactions - before == 1
        await asyncio.sleep(1.1)  # every lease of a has expired: a is paused, say
        await b.leases.acquire("wallet:y")  # b takes one of them
        await a.keeper.renew()  # a wakes: y is lost, x and z are renewed
        assert sorted(a.running) == ["x", "z"] and a.dropped == ["lease taken over by another node"]
        rows = {r["market"]: r for r in await a.leases.all()}
        assert rows["wallet:x"]["owner"] == rows["wallet:z"]["owner"] == a.leases.owner
        assert rows["wallet:y"]["owner"] == b.leases.owner and rows["wallet:y"]["epoch"] == 2
        assert int(rows["wallet:x"]["expires_at"]) > int(rows["wallet:y"]["acquired_at"])
    finally:
        await store.close()
        await store_b.close()


async def test_handed_back_at_once_to_the_node_that_just_gave_it_up(tmp_path: Any) -> None:
    """A move there and back again: the hold-off that keeps a node from taking back what it gave up
    does not apply to a lease handed to it by name."""
    url = f"sqlite:///{tmp_path}/keeper.db"
    store, store_b = await open_store(url), await open_store(url)
    seats = {"x": Seat("a", ("b",), 1)}
    a, b = Node("a", store, seats, ["a", "b"]), Node("b", store_b, seats, ["a", "b"])
    try:
        await a.adopt()
        assert list(a.running) == ["x"]
        a.running.pop("x")  # a moves x to b (as `market move` does: drain, hold off, hand over)
        a.keeper.hold_off("x")
        await a.leases.release("wallet:x", handed_to="b")
        await b.adopt()
        assert list(b.running) == ["x"]
        b.running.pop("x")  # and at once back to a
        b.keeper.hold_off("x")
        await b.leases.release("wallet:x", handed_to="a")
        await a.adopt()
        assert list(a.running) == ["x"] and a.leases.epochs["wallet:x"] == 3
        await b.adopt()  # what b gave up and nobody handed to it stays away from it
        assert not b.running
    finally:
        await store.close()
        await store_b.close()


async def test_a_standby_just_started_leaves_a_released_lease_to_its_primary(tmp_path: Any) -> None:
    """After a full stop every lease was released long ago: the first node up takes only what it is
    the primary of, for a lease, so that the others find theirs when they start."""
    url = f"sqlite:///{tmp_path}/keeper.db"
    store = await open_store(url)
    seats = {"x": Seat("a", ("b",), 1), "y": Seat("b", ("a",), 1)}
    try:
        first = Node("a", store, seats, ["a", "b"])
        await asyncio.sleep(LEASE_MS / 1000 + 0.1)
        await first.adopt()
        assert sorted(first.running) == ["x", "y"]
        for k in ("x", "y"):  # the cluster stops cleanly
            await first.leases.release(f"wallet:{k}")
        await asyncio.sleep(LEASE_MS / 1000 + 0.1)
        a, b = Node("a", store, seats, ["a", "b"]), Node("b", store, seats, ["a", "b"])
        await a.adopt()
        assert list(a.running) == ["x"]  # not y: its primary b may be starting too
        await b.adopt()
        assert list(b.running) == ["y"]
        await asyncio.sleep(LEASE_MS / 1000 + 0.1)
        c = Node("a", store, {"z": Seat("b", ("a",), 1)}, ["a"])
        await c.adopt()
        assert not c.running
        await asyncio.sleep(LEASE_MS / 1000 + 0.1)
        await c.adopt()  # a lease after its start, its primary has not come: the standby takes it
        assert list(c.running) == ["z"]
    finally:
        await store.close()

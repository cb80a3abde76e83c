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

"""The actor runtime (node.actors.runtime): mailbox, batches, answers, supervision, shutdown.

The test actor below has no database: each batch is "committed" by appending its messages to a
list, so the tests can check that an answer never comes before the commit of its batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from node.actors.runtime import Actor, SweepingActor
from node.errors import Busy, CreateOrderFailed, ExchangeError, Timeout, Unavailable


class Doubler(Actor[Any]):
    """Answers a number with its double.

    "reject" is answered with an ExchangeError, "crash" makes the whole batch fail, "slow" takes
    0.2 s. Close `gate` to hold the actor inside handle_batch.
    """

    name = "doubler"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.seen: list[list[Any]] = []  # every batch handed to handle_batch
        self.committed: list[Any] = []  # messages of batches that completed
        self.recoveries = 0
        self.stops = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def recover(self) -> None:
        self.recoveries += 1

    async def on_stop(self) -> None:
        self.stops += 1

    async def handle_batch(self, batch: Sequence[Any]) -> list[Any]:
        self.seen.append(list(batch))
        self.entered.set()
        await self.gate.wait()
        results: list[Any] = []
        for msg in batch:
            if msg == "crash":
                raise RuntimeError("disk on fire")
            if msg == "slow":
                await asyncio.sleep(0.2)
                results.append("slow done")
            elif msg == "reject":
                results.append(CreateOrderFailed("insufficient balance"))
            else:
                results.append(msg * 2)
        self.committed.extend(batch)  # the group commit
        return results


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Doubler]]:
    """Build test actors; whatever a test leaves running is cancelled afterwards."""
    made: list[Doubler] = []

    def factory(**kw: Any) -> Doubler:
        kw.setdefault("ask_timeout", 2.0)
        actor = Doubler(**kw)
        made.append(actor)
        return actor

    yield factory
    for actor in made:
        actor.gate.set()
        task = actor._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def ask_before_start(actor: Actor[Any], msgs: list[Any]) -> list[Any]:
    """Queue one ask per message, then start the actor: the asks are then in one mailbox together."""
    tasks = [asyncio.create_task(actor.ask(m)) for m in msgs]
    await asyncio.sleep(0)
    assert actor.depth == len(msgs)
    await actor.start()
    return await asyncio.gather(*tasks, return_exceptions=True)


# -- tell and ask ---------------------------------------------------------------------------------


async def test_ask_returns_the_answer(make: Callable[..., Doubler]) -> None:
    actor = make()
    await actor.start()
    assert actor.running
    assert actor.recoveries == 1  # start() rebuilds state first
    assert await actor.ask(21) == 42
    assert actor.processed == 1
    await actor.stop()


async def test_tell_is_fire_and_forget(make: Callable[..., Doubler]) -> None:
    actor = make()
    await actor.start()
    assert actor.tell(5) is None
    await actor.ask(0)  # the mailbox is FIFO: once this is answered, 5 was handled
    assert actor.committed == [5, 0]
    await actor.stop()


# -- batching -------------------------------------------------------------------------------------


async def test_waiting_messages_are_handled_in_batches(make: Callable[..., Doubler]) -> None:
    actor = make(max_batch=8)
    for i in range(50):
        actor.tell(i)
    await actor.start()
    await actor.stop()
    assert [len(b) for b in actor.seen] == [8, 8, 8, 8, 8, 8, 2]
    assert actor.committed == list(range(50))  # in order, nothing lost
    assert (actor.processed, actor.batches) == (50, 7)


async def test_concurrent_asks_share_batches(make: Callable[..., Doubler]) -> None:
    actor = make(max_batch=16)
    await actor.start()
    answers = await asyncio.gather(*(actor.ask(i) for i in range(50)))
    assert answers == [2 * i for i in range(50)]
    assert len(actor.seen) < 50
    assert all(len(b) <= 16 for b in actor.seen)
    await actor.stop()


async def test_answers_come_only_after_the_batch_is_committed(make: Callable[..., Doubler]) -> None:
    actor = make()
    await actor.start()
    actor.gate.clear()

    async def asker(n: int) -> int:
        answer = await actor.ask(n)
        assert n in actor.committed, "answered before the commit"
        return answer

    tasks = [asyncio.create_task(asker(n)) for n in (1, 2, 3)]
    await actor.entered.wait()
    await asyncio.sleep(0.02)
    assert not any(t.done() for t in tasks)  # handle_batch has not returned: nobody is answered
    actor.gate.set()
    assert await asyncio.gather(*tasks) == [2, 4, 6]
    await actor.stop()


# -- a full mailbox -------------------------------------------------------------------------------


async def test_full_mailbox_refuses_with_busy(make: Callable[..., Doubler]) -> None:
    actor = make(mailbox_size=3)
    for i in range(3):
        actor.tell(i)
    for _ in range(5):
        with pytest.raises(Busy) as info:
            actor.tell(99)
        assert (info.value.code, info.value.status) == (3003, 503)
        with pytest.raises(Busy):
            await actor.ask(99)
    assert actor.depth == 3  # never more than its size
    await actor.start()
    await actor.stop()
    assert actor.committed == [0, 1, 2]  # the refused messages were not accepted


async def test_busy_while_the_actor_is_stuck(make: Callable[..., Doubler]) -> None:
    actor = make(mailbox_size=2)
    await actor.start()
    actor.gate.clear()
    actor.tell(1)
    await actor.entered.wait()  # 1 is being handled, the mailbox is empty again
    actor.tell(2)
    actor.tell(3)
    with pytest.raises(Busy):
        actor.tell(4)
    assert actor.depth == 2
    actor.gate.set()
    await actor.stop()
    assert actor.committed == [1, 2, 3]


async def test_put_waits_for_room_instead_of_failing(make: Callable[..., Doubler]) -> None:
    """Back-pressure: committed work handed between actors is never dropped."""
    actor = make(mailbox_size=2)
    actor.tell(1)
    actor.tell(2)
    waiting = asyncio.create_task(actor.put(3))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    assert actor.depth == 2
    await actor.start()
    await asyncio.wait_for(waiting, 1)
    await actor.stop()
    assert actor.committed == [1, 2, 3]


# -- timeouts and errors --------------------------------------------------------------------------


async def test_ask_times_out(make: Callable[..., Doubler]) -> None:
    actor = make()
    await actor.start()
    with pytest.raises(Timeout) as info:
        await actor.ask("slow", timeout=0.05)
    assert (info.value.code, info.value.status) == (3005, 504)
    await actor.stop()  # the slow message was still handled; its late answer is dropped quietly
    assert actor.committed == ["slow"]


async def test_ask_uses_the_actors_default_timeout(make: Callable[..., Doubler]) -> None:
    actor = make(ask_timeout=0.05)
    await actor.start()
    with pytest.raises(Timeout):
        await actor.ask("slow")
    await actor.stop()


async def test_asks_made_over_time_each_time_out_at_their_own_deadline(make: Callable[..., Doubler]) -> None:
    """One watch serves every ask with the default timeout: each still gets Timeout on time, in the
    order made, and answered asks are not kept once their batch is answered."""
    actor = make(ask_timeout=0.2)
    await actor.start()
    assert await actor.ask(1) == 2
    assert len(actor._asks) == 0
    actor.gate.clear()  # the next batch hangs
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = asyncio.create_task(actor.ask(2))
    await asyncio.sleep(0.1)
    second = asyncio.create_task(actor.ask(3))
    with pytest.raises(Timeout):
        await first
    assert 0.15 <= loop.time() - started < 0.28 and not second.done()
    with pytest.raises(Timeout):
        await second
    assert 0.25 <= loop.time() - started < 0.4
    actor.gate.set()
    assert await actor.ask(4) == 8  # the late answers to 2 and 3 are dropped quietly
    assert len(actor._asks) == 0
    await actor.stop()


async def test_exchange_error_goes_to_its_asker_only(make: Callable[..., Doubler]) -> None:
    actor = make()
    answers = await ask_before_start(actor, [1, "reject", 3])
    assert len(actor.seen) == 1  # one batch
    assert answers[0] == 2 and answers[2] == 6
    assert isinstance(answers[1], CreateOrderFailed)
    assert (answers[1].code, answers[1].message) == (2002, "insufficient balance")
    assert actor.restarts == 0  # a refusal is an answer, not a crash
    await actor.stop()


# -- crashes and supervision ----------------------------------------------------------------------


async def test_crash_fails_the_batch_and_the_actor_restarts(make: Callable[..., Doubler]) -> None:
    actor = make(max_batch=2)
    answers = await ask_before_start(actor, [1, "crash", 3, 4])
    # the first batch, [1, "crash"], failed as a whole: nothing of it was committed
    assert all(isinstance(a, Unavailable) for a in answers[:2])
    assert (answers[0].code, answers[0].status) == (3006, 503)
    # the next batch was handled by the restarted actor
    assert answers[2:] == [6, 8]
    assert actor.committed == [3, 4]
    assert actor.restarts == 1
    assert actor.recoveries == 2  # once at start, once after the crash
    assert "disk on fire" in (actor.last_error or "")
    assert await actor.ask(5) == 10
    await actor.stop()


async def test_wrong_number_of_results_fails_the_batch(make: Callable[..., Doubler]) -> None:
    """A handle_batch that loses a result must not leave askers (or stop()) waiting forever."""

    class Lossy(Doubler):
        async def handle_batch(self, batch: Sequence[Any]) -> list[Any]:
            return (await super().handle_batch(batch))[:-1]

    actor = Lossy(ask_timeout=2.0)
    answers = await ask_before_start(actor, [1, 2])
    assert all(isinstance(a, Unavailable) for a in answers)
    assert actor.restarts == 1
    await asyncio.wait_for(actor.stop(), 1)


# -- shutdown -------------------------------------------------------------------------------------


async def test_stop_drains_the_mailbox_then_refuses(make: Callable[..., Doubler]) -> None:
    actor = make(max_batch=2)
    await actor.start()
    actor.gate.clear()
    for i in range(5):
        actor.tell(i)
    await actor.entered.wait()
    stopping = asyncio.create_task(actor.stop())
    await asyncio.sleep(0)
    with pytest.raises(Unavailable):  # new messages are refused as soon as stop() begins
        actor.tell(99)
    assert not stopping.done()  # ...but the ones already waiting are finished first
    actor.gate.set()
    await asyncio.wait_for(stopping, 1)
    assert actor.committed == [0, 1, 2, 3, 4]
    assert actor.stops == 1
    assert not actor.running
    with pytest.raises(Unavailable) as info:
        actor.tell(100)
    assert isinstance(info.value, ExchangeError) and info.value.status == 503
    with pytest.raises(Unavailable):
        await actor.ask(100)


async def test_stop_before_start_returns_at_once(make: Callable[..., Doubler]) -> None:
    actor = make()
    await asyncio.wait_for(actor.stop(), 1)
    assert not actor.running
    with pytest.raises(Unavailable):
        actor.tell(1)


class Sweeper(SweepingActor[Any]):
    """Notes each sweep (True: the one at start); a sweep that fails once must not stop the next."""

    name = "sweeper"
    sweep_at_start = True

    def __init__(self) -> None:
        super().__init__(sweep_after_ms=10)
        self.sweeps: list[bool] = []

    async def handle_batch(self, batch: Sequence[Any]) -> list[Any]:
        return [None] * len(batch)

    async def sweep(self, at_start: bool) -> None:
        self.sweeps.append(at_start)
        if len(self.sweeps) == 2:
            raise RuntimeError("the store is away")


async def test_a_sweeping_actor_sweeps_at_start_then_every_period_and_stops_when_fenced() -> None:
    actor = Sweeper()
    await actor.start()
    for _ in range(100):
        if len(actor.sweeps) >= 3:
            break
        await asyncio.sleep(0.02)
    assert actor.sweeps[:3] == [True, False, False]  # the failed second sweep did not end the loop
    actor.fence("a new owner")
    await asyncio.sleep(0)
    n = len(actor.sweeps)
    await asyncio.sleep(0.2)
    assert len(actor.sweeps) == n and actor._sweep_task is not None and actor._sweep_task.done()


# -- a pipelined actor ------------------------------------------------------------------------------


class Pipelined(Actor[int]):
    """Prepares (answers) in memory at once; each batch's write waits until the test opens its
    `releases` entry. Each preparation lets the next of `arriving` in, as if it came meanwhile."""

    name = "pipelined"
    pipelined = True

    def __init__(self, arriving: list[int]) -> None:
        super().__init__(ask_timeout=5.0)
        self.arriving = arriving
        self.prepared: list[list[int]] = []
        self.writes_started = 0
        self.releases: list[asyncio.Event] = []
        self.open = False  # every write from now on commits at once

    async def recover(self) -> None:
        pass

    async def prepare_batch(self, batch: Sequence[int]) -> tuple[list[Any], Callable[[], Any]]:
        self.prepared.append(list(batch))
        if self.arriving:
            self.tell(self.arriving.pop(0))
        release = asyncio.Event()
        if self.open:
            release.set()
        self.releases.append(release)

        async def write() -> None:
            self.writes_started += 1
            await release.wait()

        return [m * 2 for m in batch], write


async def test_a_pipelined_actor_keeps_one_batch_waiting_and_gathers_the_rest_into_the_next() -> None:
    """While a write is in flight, one matched batch waits behind it; what arrives after that
    waits in the mailbox and becomes one batch (one commit), not one batch (and one commit, one
    after the other) per arrival."""
    actor = Pipelined(arriving=[2, 3])
    await actor.start()
    try:
        first = asyncio.create_task(actor.ask(1))
        for _ in range(20):
            await asyncio.sleep(0)
        assert actor.prepared == [[1], [2]] and actor.writes_started == 1
        actor.tell(4)
        actor.tell(5)
        actor.releases[0].set()  # the first write commits: the second starts, the rest is taken at once
        assert await first == 2
        for _ in range(20):
            await asyncio.sleep(0)
        assert actor.prepared == [[1], [2], [3, 4, 5]] and actor.writes_started == 2
    finally:
        actor.open = True
        for release in actor.releases:
            release.set()
        await asyncio.wait_for(actor.stop(), 5)


async def test_a_lingering_actor_waits_for_more_only_when_busy_back_to_back(make: Callable[..., Doubler]) -> None:
    """`linger_ms`: a message that comes right after a batch of several ended waits that long for
    company and goes with it in one batch; one that finds the actor idle, or that follows a lone
    message's batch (one asker waiting for each answer), is taken at once."""
    actor = make(linger_ms=300)
    await actor.start()
    await asyncio.sleep(0.4)
    clock = asyncio.get_running_loop().time
    started = clock()
    assert await asyncio.gather(actor.ask(1), actor.ask(2)) == [2, 4]  # idle: no wait
    assert clock() - started < 0.2
    third = asyncio.create_task(actor.ask(3))  # right after a batch of two: waits for more
    await asyncio.sleep(0.05)
    fourth = asyncio.create_task(actor.ask(4))
    assert await asyncio.gather(third, fourth) == [6, 8]
    assert actor.seen == [[1, 2], [3, 4]]
    await asyncio.sleep(0.4)  # idle again: taken at once, and one asker after another never waits
    started = clock()
    for n in (5, 6, 7):
        assert await actor.ask(n) == 2 * n
    assert clock() - started < 0.2 and actor.seen[-3:] == [[5], [6], [7]]

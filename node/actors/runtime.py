"""The actor runtime: a bounded mailbox, batches with one group commit, supervision.

An actor takes whatever is waiting in its mailbox (up to `max_batch`), handles it in memory, writes
all the effects in one transaction, and only then answers the askers: durable before acknowledged,
and one fsync for a whole batch. A full mailbox refuses with `Busy` instead of growing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from node.errors import Busy, ExchangeError, Fenced, Timeout, Unavailable

log = logging.getLogger(__name__)

M = TypeVar("M")


class Envelope(Generic[M]):
    """A message and, for `ask`, the future its answer goes to."""

    __slots__ = ("msg", "future")

    def __init__(self, msg: M, future: asyncio.Future[Any] | None) -> None:
        self.msg = msg
        self.future = future


def _expire(fut: asyncio.Future[Any], name: str) -> None:
    """The asker stops waiting; the message may still be processed later (retry with a client id)."""
    if not fut.done():
        fut.set_exception(Timeout(f"{name} did not answer in time"))


class Actor(Generic[M]):
    """Subclasses implement `handle_batch` (and `recover` to rebuild state from the store).

    `handle_batch` returns one result per envelope: a value, or an ExchangeError instance that the
    asker receives as an exception. If it raises, nothing of the batch is taken as done: every asker
    gets `Unavailable`, and the supervisor restarts the actor from the store.
    """

    name = "actor"

    def __init__(self, *, mailbox_size: int = 10_000, max_batch: int = 1_000, ask_timeout: float = 10.0,
                 linger_ms: int = 0) -> None:
        self.mailbox: asyncio.Queue[Envelope[M]] = asyncio.Queue(mailbox_size)
        self.max_batch = max_batch
        # A batch taken within `linger` of the previous one's end, when that one carried several
        # messages (the actor busy back to back with concurrent askers), first waits that long for
        # more: under steady load each batch then carries several times the messages for one
        # commit (the account actors' transactions per order fell by 40% in bench/bench_actor.py's
        # order path). An actor that was idle, or serves one asker at a time (a bot that waits for
        # each answer), takes its batch at once.
        self.linger = linger_ms / 1000
        self.ask_timeout = ask_timeout
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = asyncio.Event()
        self.restarts = 0
        self.processed = 0
        self.batches = 0
        self.started_at = 0.0
        self.last_error: str | None = None
        self.crashes: list[float] = []  # times of the recent restarts (crash loops show in `status`)
        self.fenced = False
        self.on_commit: Callable[[float], None] | None = None
        """Told each committed batch's duration in seconds (its handling and write; a pipelined
        actor's write alone): /metrics' batch commit latency."""
        self._asks: deque[tuple[float, asyncio.Future[Any]]] = deque()  # (deadline, future), in ask order
        self._watch: asyncio.TimerHandle | None = None

    # -- what subclasses provide ------------------------------------------------------------------
    async def recover(self) -> None:
        """Rebuild in-memory state from the store (at start and after every crash)."""

    pipelined = False
    """Pipelined actors implement `prepare_batch` instead: the next batch is prepared while the
    previous one is written."""

    async def handle_batch(self, batch: Sequence[M]) -> list[Any]:
        if not self.pipelined:
            raise NotImplementedError
        results, write = await self.prepare_batch(batch)
        if write is not None:
            await write()
        return results

    async def prepare_batch(self, batch: Sequence[M]) -> tuple[list[Any], Callable[[], Awaitable[None]] | None]:
        """The in-memory part of a batch: its results, and the write that must commit before they count."""
        raise NotImplementedError

    async def on_stop(self) -> None:
        """Called once the mailbox is drained at shutdown."""

    def on_crash(self, error: BaseException) -> None:
        """Called when a batch failed, before the supervisor rebuilds the actor from the store."""

    # -- how others talk to it --------------------------------------------------------------------
    def tell(self, msg: M) -> None:
        """Fire and forget; raises Busy when the mailbox is full."""
        self._check_open()
        try:
            self.mailbox.put_nowait(Envelope(msg, None))
        except asyncio.QueueFull:
            raise Busy(f"{self.name} is busy, try again later") from None

    async def put(self, msg: M) -> None:
        """Like tell, but waits for room: for actor-to-actor hand-offs of work already committed,
        which must not be dropped; back-pressure then reaches the first mailbox, which says Busy.
        A stopping actor refuses (Unavailable): the work is in the store for whoever runs next."""
        self._check_open()
        await self.mailbox.put(Envelope(msg, None))

    def offer(self, msg: M) -> bool:
        """`put` without the wait, for when the mailbox has room (no task, no await): False if full
        (or stopping: the caller then takes the slow path, which says why)."""
        if self.mailbox.full() or self._stopping:
            return False
        self.mailbox.put_nowait(Envelope(msg, None))
        return True

    async def ask(self, msg: M, timeout: float | None = None) -> Any:
        """Send and wait for the answer, which comes only after the batch's commit."""
        self._check_open()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        try:
            self.mailbox.put_nowait(Envelope(msg, fut))
        except asyncio.QueueFull:
            raise Busy(f"{self.name} is busy, try again later") from None
        if timeout is None or timeout == self.ask_timeout:
            # The usual timeout: one watch over every ask in flight (`_expire_asks`) instead of a
            # loop timer armed and cancelled per ask, which costs more than the future it guards.
            self._asks.append((loop.time() + self.ask_timeout, fut))
            if self._watch is None:
                self._watch = loop.call_at(self._asks[0][0], self._expire_asks)
            return await fut
        timer = loop.call_later(timeout, _expire, fut, self.name)
        try:
            return await fut
        finally:
            timer.cancel()

    def _expire_asks(self) -> None:
        """The asks whose deadline passed are answered Timeout; then the watch waits for the next one.

        Asks are kept in the order they were made, all with the same timeout, so their deadlines
        rise: those at the front are the first due. Answered ones leave as their batch is answered
        (`_answer`), so the queue holds about what is in flight."""
        self._watch = None
        asks = self._asks
        now = asyncio.get_running_loop().time()
        while asks and (asks[0][1].done() or asks[0][0] <= now):
            _expire(asks.popleft()[1], self.name)
        if asks:
            self._watch = asyncio.get_running_loop().call_at(asks[0][0], self._expire_asks)

    async def ask_later(self, msg: M, timeout: float | None = None) -> asyncio.Future[Any]:
        """Like ask, but waits for room in the mailbox instead of refusing, and returns the answer's
        future once the message is in: a consumer of an ordered queue keeps its order this way."""
        self._check_open()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        await self.mailbox.put(Envelope(msg, fut))
        timer = loop.call_later(timeout or self.ask_timeout, _expire, fut, self.name)
        fut.add_done_callback(lambda _f: timer.cancel())
        return fut

    def _check_open(self) -> None:
        if self._stopping:
            raise Unavailable(f"{self.name} is shutting down")

    def fence(self, why: str = "another owner has taken over") -> None:
        """Stop at once without draining: another owner has taken over (what is queued is not ours).
        Askers waiting in the mailbox are answered Unavailable, not left to time out."""
        if self._task is not None:
            self._task.cancel()
        if not self.fenced:
            self._give_up(why)

    @property
    def depth(self) -> int:
        return self.mailbox.qsize()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- life cycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self.started_at = time.time()
        await self.recover()
        self._ready.set()
        self._task = asyncio.create_task(self._supervise(), name=self.name)

    async def stop(self) -> None:
        """Refuse new messages, finish what is in the mailbox, then stop."""
        self._stopping = True
        if self._task is None:
            return
        await self.mailbox.join()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        if self._watch is not None:  # every ask is answered by now
            self._watch.cancel()
            self._watch = None
        await self.on_stop()

    async def _supervise(self) -> None:
        backoff = 0.05
        last_crash = 0.0
        while True:
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Fenced as e:  # another node owns the market now: stop for good, never rebuild
                self.last_error = repr(e)
                self._give_up(str(e))
                return
            except Exception as e:  # the supervisor: log with context, rebuild from the store
                self.restarts += 1
                self.last_error = repr(e)
                now = time.time()
                self.crashes = [t for t in self.crashes if now - t < 600] + [now]
                self.on_crash(e)
                if time.monotonic() - last_crash > 60:
                    backoff = 0.05  # a crash long after the last one is not a crash loop
                last_crash = time.monotonic()
                log.exception("%s crashed (restart %d); rebuilding from the store", self.name, self.restarts)
                while True:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    try:
                        await self.recover()
                        break
                    except asyncio.CancelledError:
                        raise
                    except Fenced as e:
                        self.last_error = repr(e)
                        self._give_up(str(e))
                        return
                    except Exception:
                        log.exception("%s recovery failed; retrying", self.name)
            else:
                return

    def _give_up(self, why: str) -> None:
        """Fenced: refuse everything from now on; what waits in the mailbox is answered Unavailable
        (a queued message goes back to its queue for the new owner)."""
        self.fenced = True
        self._stopping = True
        log.error("%s: fenced, stopped matching (%s)", self.name, why)
        while not self.mailbox.empty():
            self._fail([self.mailbox.get_nowait()])

    async def _run(self) -> None:
        if self.pipelined:
            await self._run_pipelined()
            return
        idle_since, last = 0.0, 0
        while True:
            batch = await self._take()
            if self.linger and last > 1 and len(batch) < self.max_batch and time.monotonic() - idle_since < self.linger:
                await asyncio.sleep(self.linger)
                batch += self._take_ready(self.max_batch - len(batch))
            started = time.perf_counter()
            try:
                results = await self.handle_batch([e.msg for e in batch])
                self._check_results(batch, results)
            except Exception:
                self._fail(batch)
                raise
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - started)
            self._answer(batch, results)
            idle_since, last = time.monotonic(), len(batch)

    async def _run_pipelined(self) -> None:
        """Match batch N+1 in memory while batch N is being written: at most one write in flight,
        and at most one matched batch waiting behind it (what comes meanwhile waits in the mailbox
        and makes the next batch bigger, not a chain of small commits).

        Writes stay strictly in order (each waits for the one before), answers come only after
        their own write, and a failed write fails every batch prepared after it (their in-memory
        state built on it), then the supervisor rebuilds from the store.
        """
        inflight: asyncio.Task[None] | None = None
        behind: asyncio.Task[None] | None = None  # the write that `inflight` waits for, if any
        try:
            while True:
                if inflight is not None and self.mailbox.empty():
                    task, inflight = inflight, None
                    await task  # nothing to overlap with: finish (or fail) the write first
                if behind is not None and not behind.done():
                    # A prepared batch already waits behind the write in flight: until that write
                    # ends, what arrives gathers in the mailbox and goes as one batch (one
                    # transaction), where each arrival would have been a batch and a commit of
                    # its own, written one after the other all the same.
                    await asyncio.wait((behind,))
                batch = await self._take()
                if inflight is not None and inflight.done() and inflight.exception() is not None:
                    self._fail(batch)  # the write before failed: nothing may be built on it
                    await inflight
                try:
                    results, write = await self.prepare_batch([e.msg for e in batch])
                    self._check_results(batch, results)
                except Exception:
                    self._fail(batch)
                    if inflight is not None:
                        await asyncio.gather(inflight, return_exceptions=True)
                    raise
                behind = inflight
                inflight = asyncio.create_task(self._finish(inflight, batch, results, write))
        finally:
            if inflight is not None and not inflight.done():
                inflight.cancel()

    async def _finish(self, prev: asyncio.Task[None] | None, batch: list[Envelope[M]], results: list[Any],
                      write: Callable[[], Awaitable[None]] | None) -> None:
        try:
            if prev is not None:
                await prev
            if write is not None:
                started = time.perf_counter()
                await write()
                if self.on_commit is not None:
                    self.on_commit(time.perf_counter() - started)
        except BaseException:
            self._fail(batch)
            raise
        self._answer(batch, results)

    async def _take(self) -> list[Envelope[M]]:
        q = self.mailbox
        return [await q.get(), *self._take_ready(self.max_batch - 1)]

    def _take_ready(self, most: int) -> list[Envelope[M]]:
        q = self.mailbox
        out: list[Envelope[M]] = []
        while len(out) < most and not q.empty():
            out.append(q.get_nowait())
        return out

    def _check_results(self, batch: list[Envelope[M]], results: list[Any]) -> None:
        if len(results) != len(batch):  # else some askers would never be answered and stop() would hang
            raise RuntimeError(f"{self.name}: {len(results)} results for a batch of {len(batch)}")

    def _fail(self, batch: list[Envelope[M]]) -> None:
        for env in batch:
            if env.future is not None and not env.future.done():
                env.future.set_exception(Unavailable(
                    f"{self.name} failed and is restarting; retry (if the database connection was lost while "
                    "committing, the request may have been done: resend orders with the same client_id)"))
            self.mailbox.task_done()
        self._forget_answered()

    def _forget_answered(self) -> None:
        asks = self._asks
        while asks and asks[0][1].done():  # answered: no longer watched (see `_expire_asks`)
            asks.popleft()

    def _answer(self, batch: list[Envelope[M]], results: list[Any]) -> None:
        for env, res in zip(batch, results, strict=True):
            fut = env.future
            if fut is not None and not fut.done():  # done: the asker timed out already
                if isinstance(res, ExchangeError):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)
            self.mailbox.task_done()
        self._forget_answered()
        self.processed += len(batch)
        self.batches += 1


class SweepingActor(Actor[M]):
    """An actor that also looks in the store, every `sweep_after_ms`, for work whose message never
    reached it (a lost bus message, a node that died between its commit and the hand-over): the
    store is the truth, messages only make things fast. The sweep runs beside the batches and stops
    with the actor, also when it is fenced (what it would find is no longer ours)."""

    sweep_at_start = False
    """Sweep once as soon as the actor runs (everything, whatever its age), then every period."""

    def __init__(self, *, sweep_after_ms: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.sweep_after_ms = sweep_after_ms
        self._sweep_task: asyncio.Task[None] | None = None

    async def sweep(self, at_start: bool) -> None:
        """One look at the store; `at_start` for the first one of a `sweep_at_start` actor."""
        raise NotImplementedError

    async def start(self) -> None:
        await super().start()
        self._sweep_task = asyncio.create_task(self._sweeper(), name=f"{self.name}:sweeper")

    async def stop(self) -> None:
        if self._sweep_task is not None:
            self._sweep_task.cancel()
        await super().stop()

    def fence(self, why: str = "another owner has taken over") -> None:
        if self._sweep_task is not None:
            self._sweep_task.cancel()
        super().fence(why)

    async def _sweeper(self) -> None:
        first = self.sweep_at_start
        while True:
            if not first:
                await asyncio.sleep(max(self.sweep_after_ms / 1000, 0.05))
            if self._stopping:
                return
            try:
                await self.sweep(first)
            except Exception:
                log.exception("%s: sweep failed; will retry", self.name)
            first = False

"""RabbitMQ links between nodes: remote market references, the market consumers, the event bridge.

- Every market has a durable queue `exchange.<cluster id>.market.<id>` (the cluster id is made
  at the database's first start, so exchanges sharing a broker never mix). Any node hands the
  orders one of its account batches accepted for the market to it as one message, a list,
  transient (the orders are durable in the store already) and publisher-confirmed; a cancel or a
  query goes as a persistent message. The owning node consumes them in order, puts them in the
  market actor's mailbox, and acknowledges a message only after the batches that handled it
  committed. The market drops any copy (a redelivery) of an order the store says is no longer
  `pending`.
- `ask` carries `reply_to` (the asking node's exclusive reply queue) and a correlation id; the
  answer, or its error, comes back there; a missing answer is a Timeout after the ask timeout.
- Every account shard has a durable queue `exchange.<cluster id>.accounts.<shard>`, consumed by
  the shard's owner (node/actors/shards.py): order submissions from the node that received them
  (asked, and dropped unread once their asker stopped waiting) and settlements to apply (told),
  both transient and unconfirmed: neither is worth a broker fsync.
  Both are taken at most once: a lost request times out, a lost settlement is swept up.
- Events go to the headers exchange `exchange.<cluster id>.event-lists`: what the node's bus
  published meanwhile (market and member envelopes, node/events.py) goes as one message, a list
  of (topic, event), while the previous one is in flight (node/cluster/coalesce.py). Its headers
  name every key the list is followed under (`follow_keys`), each with the value 1. Every node has
  a queue of its own, with one binding (`x-match: any`) per key that something on the node follows
  (`EventBus.follow`: a websocket client's market or member streams) and always one for the
  markets' rare status events. A node that receives a list puts into its local bus only the events
  it follows now, and drops the rest silently.
- A node publishes only what some other node follows. Each node announces the keys it follows
  (`EventBus.followers`) on the fanout exchange `exchange.<cluster id>.interest`: at once when
  they change, once its binding for a new key is in place, and every INTEREST_EVERY seconds;
  an announcement not renewed within INTEREST_KEEP is forgotten (a node gone). Every node keeps
  the union of the others' keys and drops a list none of whose keys is in it, before any
  encoding (`events_unfollowed`); status events go always. At start, after a reconnection and
  after a stall of its own (a paused process: the others may have forgotten it, and it them) it
  asks every node to announce at once and publishes everything for INTEREST_UNSURE seconds. A
  list nobody follows after all is dropped by the broker (not mandatory: no return, no log
  line). What a new follower may miss in the milliseconds before the publisher hears of it is
  what a binding made a moment later would have missed: depth streams see the gap in their
  sequence and take a fresh snapshot.

Messages on the hot path (hand-overs, shard requests, replies and notices, event lists) are
published, and the market and shard queues consumed, through aiormq's channel beneath aio-pika's
robust one: an aio-pika message object per message (and a second task per delivery) costs more
node CPU than the broker's work for it (bench/bench_bus.py). A market queue's deliveries are
acknowledged in order, one acknowledgement (`multiple`) per run of settled messages.

The connection is robust (reconnects with back-off); while it is down, sends fail fast with
Unavailable (503) and the store-backed pending sweep of each market catches up what was accepted.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
import orjson
from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from node.actors.market import MarketActor
from node.actors.messages import ApplySettlements
from node.actors.runtime import Actor
from node.clock import now_ms
from node.cluster.coalesce import Coalescer
from node.cluster.codec import (
    decode_messages,
    decode_result,
    decode_results,
    encode_message,
    encode_result,
    encode_results,
    join_messages,
)
from node.errors import ExchangeError, Timeout, Unavailable
from node.events import ALWAYS_FOLLOWED, EventBus, follow_keys

log = logging.getLogger(__name__)

PREFETCH = 2_000
SETTLE_BEFORE_CLOSE_S = 60.0  # a stopped consumer's channel waits this long at most for its acks
HANDOVER_QUEUE = 50_000  # accepted orders waiting to be published (beyond: back-pressure)
EVENT_BATCH = 200  # events per message at most: their keys are the message's headers, which fit one frame
HANDOVER_BATCH = 1_000  # accepted orders per hand-over message at most
INTEREST_EVERY = 5.0  # seconds between a node's announcements of the event keys it follows
INTEREST_KEEP = 3 * INTEREST_EVERY  # an announcement not renewed within this is forgotten
INTEREST_UNSURE = INTEREST_EVERY + 1.0  # after a start, a reconnection or a stall: publish everything this long
# (every live node has announced by then, even one that missed the request to do it at once)
INTEREST_MAX_KEYS = 1_000_000  # an announcement with more keys is refused as malformed
ASK_BATCH = 500  # requests to an account shard per message at most


class RabbitLink:
    def __init__(self, url: str, node: str, bus: EventBus, ask_timeout: float = 10.0, namespace: str = "x",
                 boot: str = "") -> None:
        self.namespace = namespace
        self.boot = boot
        self.url = url
        self.node = node
        self.bus = bus
        self.ask_timeout = ask_timeout
        self.conn: aio_pika.abc.AbstractRobustConnection | None = None
        self._cmd: aio_pika.abc.AbstractChannel | None = None  # orders and asks: publisher confirms
        self._ev: aio_pika.abc.AbstractChannel | None = None  # events: fire and forget
        self._quick: aio_pika.abc.AbstractChannel | None = None  # account shard traffic: transient, unconfirmed
        self._events_exchange: aio_pika.abc.AbstractExchange | None = None
        self._events_in: aio_pika.abc.AbstractQueue | None = None
        self._reply_queue: aio_pika.abc.AbstractQueue | None = None
        self._waiting: dict[str, asyncio.Future[Any] | list[asyncio.Future[Any]]] = {}
        # Events to send to the other nodes (topic, encoded event), in the order the bus had them.
        self._outbox: Coalescer[tuple[str, bytes]] = Coalescer(self._publish_events, most=EVENT_BATCH, limit=100_000)
        # Accepted orders waiting to be published, by market queue; requests by account shard queue.
        self._handovers = Coalescer(self._publish_handovers, most=HANDOVER_BATCH, limit=HANDOVER_QUEUE)
        self._asks: Coalescer[_Ask] = Coalescer(self._publish_asks, most=ASK_BATCH, limit=HANDOVER_QUEUE)
        self._tells: Coalescer[ApplySettlements] = Coalescer(self._publish_tells, most=ASK_BATCH, limit=HANDOVER_QUEUE)
        self.handover_failures = 0
        self._consumers: dict[str, asyncio.Task[None]] = {}
        self._closers: set[asyncio.Future[None]] = set()  # consumer channels being closed (`_closing`)
        self._declared: set[str] = set()  # shard queues declared by this process
        self._ctl: aio_pika.abc.AbstractChannel | None = None
        self._ping: aio_pika.abc.AbstractRobustChannel | None = None  # probes (`ping`, `queue_depth`)
        self.on_control: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None
        self.published = 0  # messages sent to market and account shard queues (a list counts once)
        self.handed_over = 0  # accepted orders among them, sent to their market's queue
        self.consumed = 0
        self.replies = 0  # answers sent back to asking nodes
        self.events_published = 0
        self.events_consumed = 0
        self.dropped_events = 0
        self.events_unfollowed = 0  # envelopes not sent: no other node follows any of their keys
        self._interest_exchange: aio_pika.abc.AbstractExchange | None = None
        self._interest: dict[str, tuple[frozenset[str], float]] = {}  # "node/boot": (keys, forget at)
        self._followed_elsewhere: frozenset[str] = frozenset()  # the union of the others' keys
        self._unsure_until = float("inf")  # publish everything until then (monotonic s)
        self._interest_task: asyncio.Task[None] | None = None
        self._announcing: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)

    async def _publish(self, channel: aio_pika.abc.AbstractChannel | None, routing_key: str, body: bytes, *,
                       exchange: str = "", mandatory: bool = True, timeout: float | None = None,
                       **properties: Any) -> None:
        """One message through aiormq's channel itself: no aio-pika Message or exchange object per
        message, which cost more CPU than the broker's work (bench/bench_bus.py). On a channel with
        publisher confirms, returns once the broker confirmed (a refusal raises)."""
        if channel is None:
            raise ConnectionError("bus down")
        raw = await channel.get_underlay_channel()
        # A message id of our own: aiormq would make a random UUID for each message.
        props = Basic.Properties(message_id=str(next(self._ids)), **properties)
        await raw.basic_publish(body, exchange=exchange, routing_key=routing_key, properties=props,
                                mandatory=mandatory, timeout=timeout)

    async def start(self) -> None:
        self.conn = await aio_pika.connect_robust(
            self.url, reconnect_interval=1, client_properties={"connection_name": f"node {self.node}"})
        self._cmd = await self.conn.channel(publisher_confirms=True)
        self._ev = await self.conn.channel(publisher_confirms=False)
        # Account shard traffic (requests that expire with their asker, settlement notices that the
        # owner's sweep backs up): transient and unconfirmed, so no broker fsync or confirm per order.
        self._quick = await self.conn.channel(publisher_confirms=False)
        # A name of its own: a topic exchange `….events` of earlier versions may exist on the broker.
        self._events_exchange = await self._ev.declare_exchange(
            events_exchange(self.namespace), aio_pika.ExchangeType.HEADERS, durable=True)
        self._reply_queue = await self._cmd.declare_queue(exclusive=True, auto_delete=True)
        await self._reply_queue.consume(self._on_reply, no_ack=True)
        events_in = await self._ev.declare_queue(exclusive=True, auto_delete=True)
        # Only the halts always (every node refuses orders for a halted market); the rest is bound
        # while followed here (`bind_events`, called by the bus).
        self._events_in = events_in
        await self.bind_events(ALWAYS_FOLLOWED, True)
        await events_in.consume(self._on_event, no_ack=True)
        self._interest_exchange = await self._ev.declare_exchange(
            interest_exchange(self.namespace), aio_pika.ExchangeType.FANOUT, durable=True)
        interest_in = await self._ev.declare_queue(exclusive=True, auto_delete=True)
        await interest_in.bind(self._interest_exchange)
        await interest_in.consume(self._on_interest, no_ack=True)
        self.conn.reconnect_callbacks.add(self._ask_everyone)
        await self._ask_everyone()
        self._interest_task = asyncio.create_task(self._announce_every())
        self.bus.binder = self.bind_events
        self.bus.subscribe(self._on_local_event)
        # Operator commands for this process (release, adopt): a queue of this boot's own, gone
        # with it, and commands expire unread within seconds. A command is done now or refused
        # now; a node that is down never finds an old command waiting when it comes back.
        self._ctl = await self.conn.channel()
        control = await self._ctl.declare_queue(control_queue(self.namespace, self.node, self.boot),
                                                exclusive=True, auto_delete=True)
        await control.consume(self._on_control)

    async def _on_control(self, message: AbstractIncomingMessage) -> None:
        """Run a command and answer whoever sent it."""
        try:
            command = orjson.loads(message.body)
            if int(command.get("deadline", 0)) < now_ms():  # held up (a paused node)
                answer: dict[str, Any] = {"ok": False, "message": "the command arrived too late and was not run"}
            elif self.on_control is None:
                answer = {"ok": False, "message": "this node takes no commands"}
            else:
                answer = await self.on_control(command)
        except Exception as e:
            log.exception("control command failed: %s", message.body[:200].decode(errors="replace").encode("unicode_escape"))
            answer = {"ok": False, "message": f"the command failed: {type(e).__name__}"}
        await message.ack()
        if message.reply_to and self._cmd is not None:
            try:
                await self._cmd.default_exchange.publish(
                    aio_pika.Message(orjson.dumps(answer), correlation_id=message.correlation_id),
                    routing_key=message.reply_to)
            except Exception:
                log.warning("could not answer a control command")

    async def queue_depth(self, market: str, timeout: float | None = None) -> int | None:
        """Messages waiting for a market (its lag), None when the bus cannot say (within `timeout`)."""
        if not self.connected:
            return None
        try:
            q = await self._probe(self.market_queue(market), durable=True, timeout=timeout or self.ask_timeout)
            return int(q.declaration_result.message_count or 0)
        except Exception:
            return None

    async def ping(self, timeout: float) -> None:
        """One round trip to the broker (a passive declare of this process's own control queue),
        raising if the bus does not answer within `timeout`: `connected` alone trusts a socket that
        may be cut."""
        if self.conn is None or not self.connected:
            raise ConnectionError("the message bus is not connected")
        await self._probe(control_queue(self.namespace, self.node, self.boot), durable=False, timeout=timeout)

    async def _probe(self, queue: str, durable: bool, timeout: float) -> aio_pika.abc.AbstractQueue:
        """A passive declare, always sent (a robust channel would answer a known queue from memory),
        on a channel of its own that is dropped after any failure: an answer that comes late can
        never be taken for another call's, and a refused declare (which closes its channel) never
        closes the control consumer's channel."""
        assert self.conn is not None
        try:
            if self._ping is None:
                self._ping = await asyncio.wait_for(self.conn.channel(), timeout)
            return await asyncio.wait_for(self._ping.declare_queue(queue, durable=durable, passive=True, robust=False),
                                          timeout)
        except BaseException:
            channel, self._ping = self._ping, None
            if channel is not None:
                asyncio.ensure_future(_close_quietly(channel))
            raise

    def market_queue(self, market: str) -> str:
        return f"exchange.{self.namespace}.market.{market}"

    async def close(self) -> None:
        if self._interest_task is not None:
            self._interest_task.cancel()
        self._handovers.close()
        self._outbox.close()
        self._asks.close()
        self._tells.close()
        for t in self._consumers.values():
            t.cancel()
        if self.conn is not None:
            await self.conn.close()

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.is_closed and self.conn.connected.is_set()

    # -- sending ----------------------------------------------------------------------------------
    async def send(self, market: str, msg: Any, reply: bool = False, timeout: float | None = None) -> Any:
        """A message to a market's queue (persistent, confirmed), with its answer if `reply`."""
        if self._cmd is None or not self.connected:
            raise Unavailable("the message bus is unreachable; nothing was sent, retry")
        wait = timeout or self.ask_timeout
        corr = secrets.token_hex(12) if reply else None
        fut: asyncio.Future[Any] | None = None
        if corr is not None:
            fut = asyncio.get_running_loop().create_future()
            self._waiting[corr] = fut
        try:
            await self._publish(self._cmd, self.market_queue(market), encode_message(msg), timeout=self.ask_timeout,
                                delivery_mode=2, correlation_id=corr,
                                reply_to=self._reply_queue.name if (corr and self._reply_queue) else None,
                                headers={"from": self.node})
            self.published += 1
        except Exception as e:
            if corr is not None:
                self._waiting.pop(corr, None)
            raise Unavailable(f"the message bus did not confirm ({type(e).__name__}); retry") from None
        if fut is None:
            return None
        assert corr is not None
        try:
            result = await asyncio.wait_for(fut, wait)
        except TimeoutError:
            raise Timeout(f"market {market} did not answer in time") from None
        finally:
            self._waiting.pop(corr, None)
        if isinstance(result, ExchangeError):
            raise result
        return result

    async def hand_over(self, market: str, msgs: Sequence[Any]) -> None:
        """Send accepted orders to their market without waiting for the broker's confirm.

        The orders are already durable (`pending` in the store), so their acceptance does not depend
        on the bus: waiting here would only add the broker's latency to every order, and the
        message is transient (no broker write to disk): one the broker loses (a broker restart)
        leaves its orders `pending`, and the market's sweep takes them from the store within
        `[actors] sweep_after_ms` (docs/exactly-once.md). They join what
        waits for the market's queue; one publish per queue is in flight at a time, and what came
        meanwhile goes in the next one, as one message (node/cluster/coalesce.py): the busier the
        queue, the bigger its messages, with no timer. A publish that fails is logged and left to
        the market's pending sweep. Waits only while HANDOVER_QUEUE orders wait (back-pressure).
        """
        await self._handovers.add(self.market_queue(market), [encode_message(m) for m in msgs])

    async def _publish_handovers(self, queue: str, bodies: list[bytes]) -> None:
        await self._publish_one(queue, join_messages(bodies), len(bodies))

    async def _publish_one(self, queue: str, body: bytes, orders: int) -> None:
        try:
            if self._cmd is None or not self.connected:
                raise ConnectionError("bus down")
            await self._publish(self._cmd, queue, body, timeout=self.ask_timeout, delivery_mode=1,
                                headers={"from": self.node})
            self.published += 1
            self.handed_over += orders
        except Exception as e:
            self.handover_failures += orders
            if self.handover_failures % 100 < orders:
                log.warning("hand-over of %d orders to %s failed (%r); the owner's sweep will take them",
                            orders, queue, e)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        waiter = self._waiting.pop(message.correlation_id or "", None)
        if isinstance(waiter, list):  # the answers to a list of requests, in its order
            for fut, result in zip(waiter, decode_results(message.body), strict=False):
                if not fut.done():
                    fut.set_result(result)
        elif waiter is not None and not waiter.done():
            waiter.set_result(decode_result(message.body))

    # -- consuming the markets this node owns -----------------------------------------------------
    async def serve_market(self, actor: MarketActor) -> None:
        assert self.conn is not None
        channel = await self.conn.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(self.market_queue(actor.market.id), durable=True)
        inbox = _Inbox(channel, queue.name, no_ack=False)
        await inbox.start()
        self._consumers[actor.market.id] = asyncio.create_task(self._consume(actor, inbox),
                                                               name=f"consume:{actor.market.id}")

    async def stop_serving(self, market: str) -> None:
        """Stop taking new messages for a market (those delivered but not yet in the mailbox go
        back to the queue); acks of messages already handed to the actor still go out."""
        task = self._consumers.pop(market, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _consume(self, actor: MarketActor, inbox: _Inbox) -> None:
        """One loop, so messages reach the mailbox in queue order (a list's in its order); each is
        acked once every batch that took its messages committed, in delivery order, one
        acknowledgement (multiple) for each run of settled messages (`_Acks`)."""
        acks = _Acks()
        try:
            while True:
                message = await inbox.get()
                tag = message.delivery_tag or 0
                try:
                    msgs = decode_messages(message.body)
                except Exception:
                    log.exception("undecodable message on %s dropped", inbox.queue)
                    await _quietly(message.channel.basic_reject(tag, requeue=False))
                    continue
                taken: list[asyncio.Future[Any]] = []
                try:
                    for msg in msgs:  # waits for room: a requeued message would lose its place in the queue
                        taken.append(await actor.ask_later(msg, timeout=3600))
                except ExchangeError as e:  # stopping: leave it in the queue for the market's next owner
                    await _quietly(message.channel.basic_nack(tag, requeue=True))  # what went in already is taken once
                    log.warning("%s: %s; message requeued", actor.name, e.message)
                    await asyncio.sleep(0.05)
                    continue
                self.consumed += 1
                props = message.header.properties
                if props.reply_to and len(taken) == 1:  # an ask: answered, then acknowledged
                    answered = asyncio.ensure_future(self._answer_market(props.reply_to, props.correlation_id, taken[0]))
                    acks.track(message.channel, tag, [answered], requeue=False)
                else:  # hand-overs: if one's batch failed, the whole list comes again, and the orders
                    # the store says were taken already are dropped as copies (MarketActor._intake_plan)
                    acks.track(message.channel, tag, taken, requeue=True)
        finally:
            await inbox.stop()
            # The channel is this consumer's alone: closed once the messages handed to the actor
            # are settled (a channel left open per adoption would run into the broker's channel_max).
            self._closing(_close_when_settled(inbox.channel, acks))

    async def _answer_market(self, reply_to: str, corr: str | None, fut: asyncio.Future[Any]) -> None:
        """After the batch committed: answer the asker."""
        await asyncio.wait((fut,))
        exc = fut.exception() if not fut.cancelled() else None
        result = Unavailable("the market failed; retry") if fut.cancelled() else fut.result() if exc is None else exc
        if isinstance(exc, Exception) and not isinstance(exc, ExchangeError):
            result = Unavailable("the market failed; retry")
        try:
            await self._publish(self._cmd, reply_to, encode_result(result), correlation_id=corr)
            self.replies += 1
        except Exception:
            log.warning("could not answer a market request; its asker times out")

    # -- account shards (node/actors/shards.py) ---------------------------------------------------
    def shard_queue(self, shard: int) -> str:
        return f"exchange.{self.namespace}.accounts.{shard}"

    async def _declare_once(self, queue: str) -> None:
        """A queue that requests may reach before its consumer ever started (else the broker would
        drop them unrouted and the asker would only time out)."""
        if queue not in self._declared and self._cmd is not None:
            await self._cmd.declare_queue(queue, durable=True)
            self._declared.add(queue)

    async def ask_shard(self, shard: int, msg: Any, timeout: float | None = None) -> Any:
        """A request to the owner of an account shard (an order submission), and its answer.

        Requests to one shard go out as lists, one publish in flight per shard queue (as hand-overs
        do), each list answered by one reply. A request is worth nothing after its asker's timeout,
        so a list is transient and unconfirmed, expires with its first request's deadline (broker
        expiry, and a deadline the consumer checks: a request that timed out is never done later);
        a list the broker loses is a timeout for its askers, as a lost answer would be."""
        if self._quick is None or not self.connected:
            raise Unavailable("the message bus is unreachable; nothing was sent, retry")
        queue = self.shard_queue(shard)
        wait = timeout or self.ask_timeout
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._asks.add(queue, [_Ask(encode_message(msg), fut, now_ms() + int(wait * 1000))])
        try:
            result = await asyncio.wait_for(fut, wait)
        except TimeoutError:
            raise Timeout(f"{queue} did not answer in time") from None
        if isinstance(result, ExchangeError):
            raise result
        return result

    async def _publish_asks(self, queue: str, asks: list[_Ask]) -> None:
        corr = secrets.token_hex(12)
        futures = [a.future for a in asks]
        deadline = min(a.deadline for a in asks)
        self._waiting[corr] = futures
        loop = asyncio.get_running_loop()
        loop.call_later(max(a.deadline for a in asks) / 1000 - now_ms() / 1000 + 1, self._waiting.pop, corr, None)
        try:
            if self._quick is None or self._reply_queue is None or not self.connected:
                raise ConnectionError("bus down")
            await self._declare_once(queue)
            await self._publish(self._quick, queue, join_messages([a.body for a in asks]), timeout=self.ask_timeout,
                                delivery_mode=1, correlation_id=corr, reply_to=self._reply_queue.name,
                                headers={"from": self.node, "deadline": deadline},
                                expiration=str(max(1, deadline - now_ms())))
            self.published += 1
        except Exception as e:
            self._waiting.pop(corr, None)
            for fut in futures:
                if not fut.done():
                    fut.set_result(Unavailable(f"the message bus did not take the request ({type(e).__name__}); retry"))

    async def tell_shard(self, shard: int, msg: ApplySettlements) -> None:
        """Settlements for a shard's owner: no answer, and they may be lost (the owner's sweep finds
        what never arrived): transient, unconfirmed. The notices that wait while one is published
        go as one, their ids together."""
        await self._tells.add(self.shard_queue(shard), [msg])

    async def _publish_tells(self, queue: str, msgs: list[ApplySettlements]) -> None:
        msg = msgs[0] if len(msgs) == 1 else ApplySettlements(msgs[0].shard, tuple(i for m in msgs for i in m.ids))
        try:
            if self._quick is None or not self.connected:
                raise ConnectionError("bus down")
            await self._declare_once(queue)
            await self._publish(self._quick, queue, encode_message(msg), timeout=self.ask_timeout, delivery_mode=1,
                                headers={"from": self.node})
            self.published += 1
        except Exception as e:  # the owner's sweep applies them
            log.debug("settlement notice to %s not sent (%r); the shard's sweep will find it", queue, e)

    async def serve_shard(self, shard: int, actor: Actor[Any]) -> None:
        assert self.conn is not None
        channel = await self.conn.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(self.shard_queue(shard), durable=True)
        inbox = _Inbox(channel, queue.name, no_ack=True)
        await inbox.start()
        self._consumers[self.shard_queue(shard)] = asyncio.create_task(self._consume_shard(actor, inbox),
                                                                       name=f"consume:accounts/{shard}")

    async def stop_serving_shard(self, shard: int) -> None:
        await self.stop_serving(self.shard_queue(shard))

    async def _consume_shard(self, actor: Actor[Any], inbox: _Inbox) -> None:
        """At most once: messages are taken without acknowledgements, so a request is done by the
        owner that took it or not at all (its asker then times out); one whose asker has given up
        already is dropped unread. A list of requests is answered by one reply, a list of answers."""
        try:
            while True:
                message = await inbox.get()
                props = message.header.properties
                deadline = (props.headers or {}).get("deadline")
                if isinstance(deadline, int) and now_ms() > deadline:
                    continue
                try:
                    msgs = decode_messages(message.body)
                except Exception:
                    log.exception("undecodable message on %s dropped", inbox.queue)
                    continue
                self.consumed += 1
                if not props.reply_to:
                    try:
                        for msg in msgs:
                            if not actor.offer(msg):
                                await actor.put(msg)
                    except ExchangeError as e:
                        log.warning("%s: %s; message dropped (the sweep will find it)", actor.name, e.message)
                    continue
                if not msgs:
                    continue
                taken: list[asyncio.Future[Any]] = []
                for msg in msgs:
                    try:
                        taken.append(await actor.ask_later(msg, timeout=self.ask_timeout))
                    except ExchangeError as e:
                        refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                        refused.set_result(e)
                        taken.append(refused)
                asyncio.ensure_future(self._answer_from(props.reply_to, props.correlation_id, taken,
                                                        many=message.body[:1] == b"["))
        finally:
            await inbox.stop()
            self._closing(_close_when_settled(inbox.channel, None))  # no acks: nothing to wait for

    def _closing(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a consumer channel's close in the background, held until done (a task nobody holds
        may be collected before it ends)."""
        task = asyncio.ensure_future(work)
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _answer_from(self, reply_to: str, corr: str | None, taken: list[asyncio.Future[Any]],
                           many: bool) -> None:
        await asyncio.wait(taken)
        results = [_outcome(f) for f in taken]
        try:
            await self._publish(self._quick, reply_to, encode_results(results) if many else encode_result(results[0]),
                                correlation_id=corr)
            self.replies += 1
        except Exception:
            log.warning("could not answer a request to an account shard; its asker times out")

    # -- events -----------------------------------------------------------------------------------
    async def bind_events(self, key: str, on: bool) -> None:
        """Receive (or stop receiving) other nodes' events followed under a key. The routing key
        (which a headers exchange ignores) names the binding, so that the robust connection keeps
        one per key and brings them back after a reconnection."""
        if self._events_in is None or self._events_exchange is None:
            return
        if on:
            await self._events_in.bind(self._events_exchange, routing_key=key, arguments={"x-match": "any", key: 1})
        else:
            await self._events_in.unbind(self._events_exchange, routing_key=key, arguments={"x-match": "any", key: 1})
        if key != ALWAYS_FOLLOWED:
            await self._announce()  # once the binding is there: what the others send now arrives

    # -- who follows what: announcements between nodes ---------------------------------------------
    def followed_elsewhere(self, topic: str) -> bool:
        """Whether another node follows the topic's events now (or this node cannot tell yet)."""
        keys = follow_keys(topic)
        if keys[0] == ALWAYS_FOLLOWED or time.monotonic() < self._unsure_until:
            return True
        elsewhere = self._followed_elsewhere
        return any(k in elsewhere for k in keys)

    async def _announce(self, ask: bool = False) -> None:
        """Tell every node which keys this one follows (`ask`: and that each should say its own now)."""
        if self._interest_exchange is None:
            return
        keys = sorted(k for k, n in self.bus.followers.items() if n > 0 and k != ALWAYS_FOLLOWED)
        body = orjson.dumps({"boot": self.boot, "node": self.node, "keys": keys, "ask": ask})
        try:
            await self._publish(self._ev, "", body, exchange=self._interest_exchange.name, mandatory=False)
        except Exception:
            log.warning("could not announce the followed event keys; the next announcement brings them")

    async def _announce_every(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(INTEREST_EVERY)
            now = time.monotonic()
            if now - last > 2 * INTEREST_EVERY:  # this process stalled: nothing it knows is sure
                last = now
                await self._ask_everyone()
                continue
            last = now
            gone = [who for who, (_, until) in self._interest.items() if until < now]
            for who in gone:
                del self._interest[who]
            if gone:
                self._union()
            await self._announce()

    def _union(self) -> None:
        self._followed_elsewhere = frozenset().union(*(keys for keys, _ in self._interest.values()))

    async def _on_interest(self, message: AbstractIncomingMessage) -> None:
        try:
            said = orjson.loads(message.body)
            who, keys, ask = f"{said['node']}/{said['boot']}", said["keys"], bool(said.get("ask"))
            if not isinstance(keys, list) or len(keys) > INTEREST_MAX_KEYS or not all(isinstance(k, str) for k in keys):
                raise ValueError("malformed")
        except (ValueError, KeyError, TypeError):
            log.warning("an event interest announcement was malformed and is ignored")
            return
        if who == f"{self.node}/{self.boot}":
            return  # this node's own
        self._interest[who] = (frozenset(keys), time.monotonic() + INTEREST_KEEP)
        self._union()
        if ask:  # a node that just started (or reconnected) wants to know now
            task = asyncio.create_task(self._announce())
            self._announcing.add(task)
            task.add_done_callback(self._announcing.discard)

    async def _ask_everyone(self, _connection: Any = None) -> None:
        """At start, after a reconnection (the robust connection's callback) or a stall of this
        process, announcements may have been missed: publish everything until everyone has been
        heard again, and ask them to speak now."""
        self._unsure_until = time.monotonic() + INTEREST_UNSURE
        await self._announce(ask=True)

    def _on_local_event(self, topic: str, event: dict[str, Any]) -> None:
        if event.get("_from") is not None:
            return  # came from another node: not ours to forward
        if not self.followed_elsewhere(topic):
            self.events_unfollowed += 1
            return
        if not self._outbox.offer("events", [(topic, orjson.dumps(event))]):
            self.dropped_events += 1  # streams carry sequence numbers: clients resync on a gap

    async def _publish_events(self, _queue: str, events: list[tuple[str, bytes]]) -> None:
        """One message for what waited: one publish at a time, so each market's events stay in order."""
        if self._events_exchange is None:
            return
        headers: dict[str, Any] = {key: 1 for topic, _ in events for key in follow_keys(topic)}
        headers["from"] = self.node
        body = b"[" + b",".join(b"[" + orjson.dumps(topic) + b"," + event + b"]" for topic, event in events) + b"]"
        try:
            # Not mandatory: a list that no node follows is simply dropped by the broker. A
            # mandatory one would come back as a Basic.Return, which the client library logs as an
            # unhandled ERROR, once per list nobody receives.
            await self._publish(self._ev, "", body, exchange=self._events_exchange.name, mandatory=False,
                                headers=headers)
            self.events_published += 1
        except Exception:
            self.dropped_events += len(events)
            await asyncio.sleep(0.1)

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        origin = (message.headers or {}).get("from")
        self.events_consumed += 1  # delivered, even if it is this node's own and dropped here
        if origin == self.node:
            return
        for topic, event in orjson.loads(message.body):
            if self.bus.wanted(topic):  # the list may carry others' keys too, or one unfollowed since
                event["_from"] = origin
                self.bus.publish(topic, event)


@dataclass(slots=True)
class _Ask:
    """A request to an account shard waiting to be published: its body, its asker's future and
    when its asker stops waiting (epoch ms)."""

    body: bytes
    future: asyncio.Future[Any]
    deadline: int


def _outcome(fut: asyncio.Future[Any]) -> Any:
    """An account batch's answer to one request, as the asker gets it (a failure: Unavailable)."""
    if fut.cancelled():
        return Unavailable("the account shard failed; retry")
    exc = fut.exception()
    if exc is None:
        return fut.result()
    return exc if isinstance(exc, ExchangeError) else Unavailable("the account shard failed; retry")


def _failed(fut: asyncio.Future[Any]) -> bool:
    """The batch that took a message did not commit (a crash, the actor stopping): worth sending again."""
    if fut.cancelled():
        return True
    exc = fut.exception()
    return exc is not None and (isinstance(exc, Unavailable) or not isinstance(exc, ExchangeError))


class _Inbox:
    """The deliveries of one queue, taken through aiormq's channel itself (no aio-pika message
    object, nor a second task, per message), for one loop that handles them in queue order. The
    robust channel declares the queue again after a reconnection; the consumer then starts again
    on the new channel (`reopen_callbacks`)."""

    def __init__(self, channel: aio_pika.abc.AbstractRobustChannel, queue: str, no_ack: bool) -> None:
        self.channel = channel
        self.queue = queue
        self.no_ack = no_ack
        self.tag = "ctag." + secrets.token_hex(8)
        self._raw: aiormq.abc.AbstractChannel | None = None
        self._items: deque[DeliveredMessage] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._retry: asyncio.Future[None] | None = None  # consuming again after the broker's cancel

    async def start(self) -> None:
        await self._consume()
        self.channel.reopen_callbacks.add(self._reopened)

    async def _consume(self) -> None:
        raw = await self.channel.get_underlay_channel()
        self._raw = raw
        raw.on_consumer_cancel_callbacks.add(self._cancelled)
        await raw.basic_consume(self.queue, self._deliver, no_ack=self.no_ack, consumer_tag=self.tag)

    def _cancelled(self, frame: Any) -> None:
        """The broker ended the consumer (its queue was deleted by hand): declare the queue again and
        consume again, retrying, for as long as this inbox runs. Meanwhile the market's pending
        sweep takes its orders from the store."""
        if frame.consumer_tag == self.tag and self._raw is not None and (self._retry is None or self._retry.done()):
            self._retry = asyncio.ensure_future(self._consume_again())

    async def _consume_again(self) -> None:
        for attempt in itertools.count(1):
            await asyncio.sleep(min(5.0, 0.5 * attempt))
            if self._raw is None:  # stopped meanwhile
                return
            try:
                await self.channel.declare_queue(self.queue, durable=True)
                await self._consume()
            except Exception as e:
                log.warning("could not consume %s again after the broker cancelled it (%r); retrying", self.queue, e)
                continue
            log.warning("consuming %s again: the broker had cancelled its consumer", self.queue)
            return

    async def _reopened(self, _channel: Any) -> None:
        if not self.no_ack:  # their channel is gone, so is their delivery tag: the broker delivers them again
            self._items.clear()
        try:
            await self._consume()
        except Exception:
            log.exception("could not consume %s again after a reconnection", self.queue)

    async def _deliver(self, message: DeliveredMessage) -> None:
        self._items.append(message)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def get(self) -> DeliveredMessage:
        while not self._items:
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
        return self._items.popleft()

    async def stop(self) -> None:
        """No more deliveries; those not taken yet go back to the queue."""
        self.channel.reopen_callbacks.discard(self._reopened)
        raw, self._raw = self._raw, None
        if self._retry is not None:
            self._retry.cancel()
        if raw is not None and not raw.is_closed:
            await _quietly(asyncio.wait_for(raw.basic_cancel(self.tag), 5))
        items, self._items = self._items, deque()
        if not self.no_ack:
            for message in items:
                if not message.channel.is_closed:
                    await _quietly(message.channel.basic_nack(message.delivery_tag or 0, requeue=True, wait=False))


@dataclass(slots=True)
class _Delivery:
    """A delivered message waiting for the batches that took it."""

    channel: aiormq.abc.AbstractChannel
    tag: int
    left: int  # futures not done yet
    requeue: bool  # if one of them failed
    failed: bool = False


class _Acks:
    """One consumer's acknowledgements, in delivery order: when the messages at the front are
    settled, one Basic.Ack (multiple) for the run of them, and a Basic.Nack (requeue) for one whose
    batch failed. One frame (and one broker operation) per run of messages, not per message; sent by
    one task, in order, since an ack for a lower tag after a multiple one would be refused."""

    def __init__(self) -> None:
        self._open: deque[_Delivery] = deque()
        self._ops: deque[tuple[aiormq.abc.AbstractChannel, int, bool]] = deque()
        self._flush_due = False
        self._sender: asyncio.Future[None] | None = None

    def track(self, channel: aiormq.abc.AbstractChannel, tag: int, futures: list[asyncio.Future[Any]],
              requeue: bool) -> None:
        delivery = _Delivery(channel, tag, len(futures), requeue)
        self._open.append(delivery)
        for fut in futures:
            fut.add_done_callback(lambda f, d=delivery: self._done(d, f))  # type: ignore[misc]
        if not futures:
            self._due()

    def _done(self, delivery: _Delivery, fut: asyncio.Future[Any]) -> None:
        delivery.left -= 1
        if delivery.requeue and _failed(fut):
            delivery.failed = True
        if delivery.left == 0:
            self._due()

    def _due(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        run: aiormq.abc.AbstractChannel | None = None
        upto = 0
        while self._open and self._open[0].left == 0:
            d = self._open.popleft()
            if d.channel.is_closed:  # gone with its channel: the broker delivers it again
                continue
            if run is not None and (d.channel is not run or d.failed):
                self._ops.append((run, upto, True))
                run = None
            if d.failed:
                self._ops.append((d.channel, d.tag, False))
            else:
                run, upto = d.channel, d.tag
        if run is not None:
            self._ops.append((run, upto, True))
        if self._ops and (self._sender is None or self._sender.done()):
            self._sender = asyncio.ensure_future(self._send())

    async def settled(self, timeout: float) -> None:
        """Until every message tracked is acknowledged or sent back (or `timeout` s have passed)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._open or self._ops or (self._sender is not None and not self._sender.done()):
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.05)

    async def _send(self) -> None:
        while self._ops:
            channel, tag, ok = self._ops.popleft()
            try:
                if ok:
                    await channel.basic_ack(tag, multiple=True, wait=False)
                else:
                    await channel.basic_nack(tag, requeue=True, wait=False)
            except Exception:
                log.exception("could not settle a market message; it will be redelivered")


async def _close_when_settled(channel: aio_pika.abc.AbstractChannel, acks: _Acks | None,
                              timeout: float = SETTLE_BEFORE_CLOSE_S) -> None:
    """Close a consumer's channel once what it delivered is settled: what is still unsettled then
    (a batch stuck past `timeout`) goes back to the queue with the channel, and the store's intake
    check drops its copies."""
    if acks is not None:
        await acks.settled(timeout)
    await _quietly(asyncio.wait_for(channel.close(), 5))


async def _quietly(work: Awaitable[Any]) -> None:
    """For a frame to a channel that may be gone: the broker then redelivers what it concerned."""
    try:
        await work
    except Exception as e:
        log.debug("bus operation failed: %r", e)


async def _close_quietly(channel: aio_pika.abc.AbstractRobustChannel) -> None:
    try:
        await asyncio.wait_for(channel.close(), 5)
    except BaseException:  # a broken channel: the connection's recovery disposes of it
        pass


class RemoteMarket:
    """A market actor on another node, with the local actor's interface (put, ask, halted)."""

    def __init__(self, market: str, link: RabbitLink) -> None:
        self.market_id = market
        self.link = link
        self.halted = False
        self.name = f"remote:{market}"

    def offer(self, msg: Any) -> bool:
        """Always False, so the account actor hands its batch's orders over with `put_all`: that
        queues them for the publisher (waiting only while HANDOVER_QUEUE orders are queued) and never
        awaits the broker's confirm (see `RabbitLink.hand_over`)."""
        return False

    async def put(self, msg: Any) -> None:
        await self.link.hand_over(self.market_id, [msg])

    async def put_all(self, msgs: Sequence[Any]) -> None:
        await self.link.hand_over(self.market_id, msgs)

    async def ask(self, msg: Any, timeout: float | None = None) -> Any:
        return await self.link.send(self.market_id, msg, reply=True, timeout=timeout)


def events_exchange(namespace: str) -> str:
    return f"exchange.{namespace}.event-lists"


def interest_exchange(namespace: str) -> str:
    return f"exchange.{namespace}.interest"


def control_queue(namespace: str, node: str, boot: str) -> str:
    return f"exchange.{namespace}.control.{node}.{boot}"


CONTROL_EXPIRY_MS = 3_000  # a command not taken by then is dropped by the broker, never run later


async def send_control_once(url: str, namespace: str, node: str, boot: str, command: dict[str, Any],
                            timeout: float = 60.0) -> dict[str, Any]:
    """For the command line: one command to one running process, and its answer. If that process
    is gone, the broker refuses the message at once (mandatory routing) or drops it unread after a
    few seconds: nothing is left to run at some later boot."""
    conn = await aio_pika.connect(url, timeout=10)
    try:
        channel = await conn.channel(publisher_confirms=True)
        replies = await channel.declare_queue(exclusive=True, auto_delete=True)
        corr = secrets.token_hex(12)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        async def on_reply(message: AbstractIncomingMessage) -> None:
            if message.correlation_id == corr and not answer.done():
                answer.set_result(orjson.loads(message.body))

        await replies.consume(on_reply, no_ack=True)
        try:
            command = dict(command, deadline=now_ms() + CONTROL_EXPIRY_MS)
            await channel.default_exchange.publish(
                aio_pika.Message(orjson.dumps(command), correlation_id=corr, reply_to=replies.name,
                                 expiration=CONTROL_EXPIRY_MS / 1000, headers={"from": "cli"}),
                routing_key=control_queue(namespace, node, boot), mandatory=True)
        except aio_pika.exceptions.DeliveryError:
            return {"ok": False, "message": f"node {node} (boot {boot}) is not connected to the bus; nothing was done"}
        try:
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            return {"ok": False, "message": f"node {node} did not answer within {timeout:.0f} s; the command "
                                            "expires unread if it was not taken (check `status`)"}
    finally:
        await conn.close()

"""Notices (node/notices.py): a look writes only the events that have no notice yet, in one
transaction; the events of the overlap window, seen at the last look, are not inserted again."""

from __future__ import annotations

import json
from typing import Any

from node.clock import now_ms
from node.mail import Mail
from node.notices import Notices

PROBE_PG = """CREATE FUNCTION notice_attempt() RETURNS trigger AS $$
BEGIN INSERT INTO notice_attempts VALUES (txid_current()); RETURN NEW; END $$ LANGUAGE plpgsql"""


class Outbox:
    """A mailer that keeps what it is given (the mail leaves nothing on this machine)."""

    def __init__(self) -> None:
        self.sent: list[Mail] = []

    async def send(self, mail: Mail) -> None:
        self.sent.append(mail)


async def probe_inserts(ex: Any) -> None:
    """Every INSERT tried on notices, a row in notice_attempts (with its transaction on PostgreSQL):
    a BEFORE trigger fires for a row that ON CONFLICT DO NOTHING then skips, too."""
    await ex.store.execute("CREATE TABLE notice_attempts (tx BIGINT)")
    if ex.store.backend == "postgresql":
        await ex.store.execute(PROBE_PG)
        await ex.store.execute("CREATE TRIGGER notice_attempt BEFORE INSERT ON notices FOR EACH ROW "
                               "EXECUTE FUNCTION notice_attempt()")
    else:
        await ex.store.execute("CREATE TRIGGER notice_attempt BEFORE INSERT ON notices "
                               "BEGIN INSERT INTO notice_attempts VALUES (NULL); END")


async def attempts(ex: Any) -> tuple[int, int]:
    row = await ex.store.fetchrow("SELECT COUNT(*) AS n, COUNT(DISTINCT tx) AS txs FROM notice_attempts")
    await ex.store.execute("DELETE FROM notice_attempts")
    return int(row["n"]), int(row["txs"])


async def test_a_look_inserts_only_what_is_new_in_one_transaction(ex: Any) -> None:
    """Both backends."""
    outbox = Outbox()
    notices = Notices(ex, lambda: outbox, "PyExchange")
    await probe_inserts(ex)
    mid = await ex.create_member("d@example.com")
    for i in range(5):
        await ex.deposit(mid, "btc", "1", txid=f"tx{i}")
    assert await notices.scan() == 5
    n, txs = await attempts(ex)
    assert n == 5 and txs == (1 if ex.store.backend == "postgresql" else 0)
    assert len(outbox.sent) == 5
    for _ in range(3):  # the same deposits, in the overlap window of every later look
        assert await notices.scan() == 0
        assert await attempts(ex) == (0, 0)
    await ex.deposit(mid, "btc", "2", txid="tx5")
    assert await notices.scan() == 1
    assert (await attempts(ex))[0] == 1
    assert len(outbox.sent) == 6
    # another node's look at the same rows: it finds them written and mails nothing
    other = Notices(ex, lambda: outbox, "PyExchange")
    assert await other.scan() == 0
    assert await attempts(ex) == (0, 0) and len(outbox.sent) == 6
    assert await ex.store.fetchval("SELECT COUNT(*) FROM notices") == 6


async def test_one_look_reads_deposits_withdrawals_and_identity_checks(ex: Any) -> None:
    """Both backends: the three kinds come from one statement, each with its own fields."""
    outbox = Outbox()
    notices = Notices(ex, lambda: outbox, "PyExchange")
    mid = await ex.create_member("w@example.com")
    await ex.deposit(mid, "btc", "1", txid="in1")
    now = now_ms()
    await ex.store.execute(  # as the wallet actor leaves a sent withdrawal
        "INSERT INTO withdraws (sn, member_id, currency, amount, fee, total, address, state, note, txid, created_at, "
        "updated_at) VALUES ('W1', ?, 'btc', 50000000, 0, 50000000, 'addr1', 'done', '', 'out1', ?, ?)", mid, now, now)
    await ex.store.execute(  # as an approval by the staff leaves the member's identity check
        "INSERT INTO kyc_profiles (member_id, state, level, reason, updated_at) VALUES (?, 'verified', 2, '', ?)",
        mid, now)
    assert await notices.scan() == 3
    rows = {r["kind"]: r for r in await ex.store.fetch("SELECT kind, state, detail FROM notices")}
    assert json.loads(rows["deposit"]["detail"])["txid"] == "in1"
    withdraw = json.loads(rows["withdraw"]["detail"])
    assert rows["withdraw"]["state"] == "done" and withdraw["sn"] == "W1" and withdraw["address"] == "addr1"
    assert withdraw["amount"] == "0.5" and withdraw["txid"] == "out1"
    assert rows["kyc"]["state"] == f"verified:{now}" and json.loads(rows["kyc"]["detail"])["level"] == 2
    assert sorted(m.subject for m in outbox.sent) == [
        "PyExchange: Deposit of 1.0 BTC credited", "PyExchange: Withdrawal W1 of 0.5 BTC sent",
        "PyExchange: Your identity is verified (level 2)"]

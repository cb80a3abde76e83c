"""Notices (node/notices.py): a look writes only the events that have no notice yet, in one
transaction; the events of the overlap window, seen at the last look, are not inserted again."""

from __future__ import annotations

from typing import Any

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

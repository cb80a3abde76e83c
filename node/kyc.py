"""Identity verification (KYC): what a member states, the documents they upload, and an admin's review.

States: `unverified` (nothing sent, the default) → `verifying` (sent, waiting for an admin) →
`verified` (with a level) or `rejected` (with a reason the member sees, who may then send again).
Only `verifying` can be decided, and a decision is a conditional update, so two admins deciding at
once cannot both win.

The verification level sets the daily withdrawal limits (cluster.toml `[admin.withdraw_limits]`,
per currency, over any 24 hours): unverified members are level 0, a verified member gets the level
the admin gives (1 by default). `check_withdraw` is installed as the wallets' limit hook
(`WithdrawPolicies.limit`, given to the funds facade by node/bootstrap.py) so the API and the pages refuse a withdrawal over the limit with the
limit, what is left, and how to raise it. The security module's address book (node/security) keeps its own
checks; this is the one place that knows levels and limits.

Documents are files (node/admin/uploads.py: outside the web root, type and size checked). Personal
data is only ever shown to the member and to staff with the `kyc` permission, and every staff view
of a document is in the admin audit log.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.admin import uploads
from node.clock import now_ms
from node.config import Config
from node.errors import N_, FormError, FormErrors, InvalidParameter
from node.money import format_units
from node.store import Store, Tx

UNVERIFIED, VERIFYING, VERIFIED, REJECTED = "unverified", "verifying", "verified", "rejected"
STATES = (UNVERIFIED, VERIFYING, VERIFIED, REJECTED)
DOC_TYPES = {"passport": N_("Passport"), "id_card": N_("National ID card"), "driving_licence": N_("Driving licence")}
FILES = {"document": N_("Identity document"), "proof_of_address": N_("Proof of address")}
MAX_LEVEL = 9
DAY_MS = 86_400_000
MIN_AGE, MAX_AGE = 18, 120
_DOC_NUMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9 \-]{1,39}")
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
# ISO 3166-1 alpha-2: the country is stored as its code, the same in every language.
COUNTRIES = frozenset(
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ "
    "CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR "
    "GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO "
    "JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR "
    "MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO "
    "RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV "
    "TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW".split())


@dataclass(frozen=True)
class Identity:
    """What the member states about themselves, checked."""

    full_name: str
    birth_date: str  # YYYY-MM-DD
    address: str
    country: str  # ISO 3166-1 alpha-2
    phone: str  # E.164 or ""
    doc_type: str
    doc_number: str


def _text(data: dict[str, str], name: str, max_len: int, errors: list[FormError], required: bool = True) -> str:
    v = " ".join(str(data.get(name, "")).split()) if name != "address" else str(data.get(name, "")).strip()
    if required and not v:
        errors.append(FormError(name, N_("This field is required")))
    elif len(v) > max_len:
        errors.append(FormError(name, N_("Too long: at most {n} characters"), n=max_len))
    elif any(not c.isprintable() and c not in "\r\n" for c in v):
        errors.append(FormError(name, N_("Only printable characters, please")))
    return v


def check_identity(data: dict[str, str], today: dt.date | None = None) -> Identity:
    """Every field checked at once (FormErrors lists each wrong field with its own message)."""
    errors: list[FormError] = []
    name = _text(data, "full_name", 100, errors)
    birth = _text(data, "birth_date", 10, errors)
    address = _text(data, "address", 300, errors)
    country = _text(data, "country", 2, errors).upper()
    phone = "".join(c for c in str(data.get("phone", "")) if c not in " -()./")  # as people write numbers
    doc_type = str(data.get("doc_type", ""))
    doc_number = _text(data, "doc_number", 40, errors).upper()
    if birth and not any(e.field == "birth_date" for e in errors):
        today = today or dt.datetime.now(dt.UTC).date()
        try:
            born = dt.date.fromisoformat(birth)
            if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", birth):
                raise ValueError
        except ValueError:
            errors.append(FormError("birth_date", N_("Enter the date as YYYY-MM-DD, like 1990-04-25")))
        else:
            age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
            if age < MIN_AGE:
                errors.append(FormError("birth_date", N_("You must be at least {n} years old"), n=MIN_AGE))
            elif age > MAX_AGE:
                errors.append(FormError("birth_date", N_("Please check the year of birth")))
    if country and not any(e.field == "country" for e in errors) and country not in COUNTRIES:
        errors.append(FormError("country", N_("Enter your country's two-letter code, like DE, US or CN")))
    if phone and (len(phone) > 16 or not _PHONE.fullmatch(phone)):
        errors.append(FormError("phone", N_("Enter the number with its country code, like +4917612345678")))
    if doc_type not in DOC_TYPES:
        errors.append(FormError("doc_type", N_("Choose the type of document")))
    if doc_number and not any(e.field == "doc_number" for e in errors) and not _DOC_NUMBER.fullmatch(doc_number):
        errors.append(FormError("doc_number", N_("Only letters, digits, spaces and dashes")))
    if errors:
        raise FormErrors(errors)
    return Identity(name, birth, address, country, phone, doc_type, doc_number)


class Kyc:
    """Profiles, submissions and reviews over the store; files through node/admin/uploads."""

    def __init__(self, store: Store, config: Config, root: Path) -> None:
        self.store = store
        self.config = config
        self.root = root

    async def profile(self, member_id: int) -> dict[str, Any]:
        """The member's profile; a member who never sent anything is `unverified` at level 0."""
        row = await self.store.fetchrow("SELECT * FROM kyc_profiles WHERE member_id = ?", member_id)
        if row is None:
            return {"member_id": member_id, "state": UNVERIFIED, "level": 0, "full_name": "", "birth_date": "",
                    "address": "", "country": "", "phone": "", "doc_type": "", "doc_number": "", "reason": "",
                    "submitted_at": None, "reviewed_at": None, "reviewed_by": None}
        return dict(row)

    async def level(self, member_id: int) -> int:
        row = await self.store.fetchrow("SELECT state, level FROM kyc_profiles WHERE member_id = ?", member_id)
        return int(row["level"]) if row is not None and row["state"] == VERIFIED else 0

    async def files(self, member_id: int) -> list[dict[str, Any]]:
        """The documents of the member's latest submission (newest of each kind)."""
        rows = await self.store.fetch(
            "SELECT id, purpose, name, mime, size, created_at FROM uploads WHERE member_id = ? AND purpose IN "
            "('kyc_document', 'kyc_proof_of_address') ORDER BY id DESC", member_id)
        seen: dict[str, dict[str, Any]] = {}
        for r in rows:
            seen.setdefault(str(r["purpose"]), dict(r))
        return list(seen.values())

    async def submit(self, member_id: int, data: dict[str, str], files: dict[str, uploads.Incoming | None]) -> None:
        """Check everything (fields and files, all errors at once), store the files, and set the profile
        to `verifying`. Refused while a submission waits or once verified."""
        current = await self.profile(member_id)
        if current["state"] == VERIFYING:
            raise FormError(None, N_("Your documents are being reviewed; please wait for the answer"))
        if current["state"] == VERIFIED:
            raise FormError(None, N_("Your identity is already verified"))
        errors: list[FormError] = []
        identity: Identity | None = None
        try:
            identity = check_identity(data)
        except FormErrors as e:
            errors.extend(e.errors)
        checked: dict[str, tuple[uploads.Incoming, str]] = {}
        for name in FILES:
            f = files.get(name)
            if f is None:
                errors.append(FormError(name, N_("Please choose a file")))
                continue
            try:
                checked[name] = (f, uploads.check(name, f, uploads.IMAGE_PDF))
            except FormError as e:
                errors.append(e)
        if errors or identity is None:
            raise FormErrors(errors)
        written = [(name, f, mime, await uploads.write_file(self.root, member_id, f"kyc_{name}", f, mime))
                   for name, (f, mime) in checked.items()]
        ts = now_ms()
        i = identity
        async with self.store.transaction() as tx:
            for name, f, mime, rel in written:
                await uploads.add_row(tx, member_id, f"kyc_{name}", member_id, f, mime, rel,
                                      keep_data=uploads.shared(self.store))
            n = await tx.execute(
                "UPDATE kyc_profiles SET state = ?, level = 0, full_name = ?, birth_date = ?, address = ?, country = ?, "
                "phone = ?, doc_type = ?, doc_number = ?, reason = '', submitted_at = ?, reviewed_at = NULL, "
                "reviewed_by = NULL, updated_at = ? WHERE member_id = ? AND state IN (?, ?)",
                VERIFYING, i.full_name, i.birth_date, i.address, i.country, i.phone, i.doc_type, i.doc_number, ts, ts,
                member_id, UNVERIFIED, REJECTED)
            if n == 0:
                exists = await tx.fetchval("SELECT 1 FROM kyc_profiles WHERE member_id = ?", member_id)
                if exists:
                    raise FormError(None, N_("Your documents are being reviewed; please wait for the answer"))
                await tx.execute(
                    "INSERT INTO kyc_profiles (member_id, state, level, full_name, birth_date, address, country, phone, "
                    "doc_type, doc_number, submitted_at, updated_at) VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    member_id, VERIFYING, i.full_name, i.birth_date, i.address, i.country, i.phone, i.doc_type,
                    i.doc_number, ts, ts)

    async def approve(self, member_id: int, reviewer: int | None, level: int = 1) -> None:
        if not 1 <= level <= MAX_LEVEL:
            raise InvalidParameter(f"level must be between 1 and {MAX_LEVEL}", "level")
        n = await self.store.execute(
            "UPDATE kyc_profiles SET state = ?, level = ?, reason = '', reviewed_at = ?, reviewed_by = ?, updated_at = ? "
            "WHERE member_id = ? AND state = ?", VERIFIED, level, now_ms(), reviewer, now_ms(), member_id, VERIFYING)
        if n != 1:
            raise InvalidParameter("this member has no submission waiting for review", "member")

    async def reject(self, member_id: int, reviewer: int | None, reason: str) -> None:
        reason = " ".join(reason.split())
        if not reason:
            raise FormError("reason", N_("Please give the reason: the member will see it"))
        if len(reason) > 300:
            raise FormError("reason", N_("Too long: at most {n} characters"), n=300)
        n = await self.store.execute(
            "UPDATE kyc_profiles SET state = ?, level = 0, reason = ?, reviewed_at = ?, reviewed_by = ?, updated_at = ? "
            "WHERE member_id = ? AND state = ?", REJECTED, reason, now_ms(), reviewer, now_ms(), member_id, VERIFYING)
        if n != 1:
            raise InvalidParameter("this member has no submission waiting for review", "member")

    async def queue(self, state: str = VERIFYING, limit: int = 200) -> list[dict[str, Any]]:
        rows = await self.store.fetch(
            "SELECT k.*, m.email FROM kyc_profiles k JOIN members m ON m.id = k.member_id WHERE k.state = ? "
            "ORDER BY k.submitted_at, k.member_id LIMIT ?", state if state in STATES else VERIFYING, limit)
        return [dict(r) for r in rows]

    # -- withdrawal limits --------------------------------------------------------------------------
    def limit(self, level: int, currency: str) -> int | None:
        """The 24-hour withdrawal limit of `currency` at `level` (smallest units); None: no limit. A level
        the table does not list uses the highest listed level below it."""
        chosen: dict[str, int] | None = None
        for lvl, per in self.config.admin.withdraw_limits:
            if lvl <= level:
                chosen = dict(per)
        if chosen is None:
            return None
        return chosen.get(currency)

    async def withdrawn(self, member_id: int, currency: str, now: int | None = None, tx: Tx | None = None) -> int:
        """What the member asked to withdraw in the last 24 hours (refused and cancelled ones aside);
        read in `tx` when given (the transaction that is about to add one)."""
        since = (now or now_ms()) - DAY_MS
        value = await (tx or self.store).fetchval(
            "SELECT COALESCE(SUM(amount), 0) FROM withdraws WHERE member_id = ? AND currency = ? AND created_at >= ? "
            "AND state NOT IN ('canceled', 'rejected', 'failed')", member_id, currency, since)
        return int(value or 0)

    async def check_withdraw(self, member_id: int, currency: str, units: int, tx: Tx | None = None) -> None:
        """The wallets' limit hook: refuse a withdrawal that would pass the member's 24-hour limit
        (with `tx`, counting what that transaction sees: see `WithdrawPolicies.limit`)."""
        level = await self.level(member_id)
        limit = self.limit(level, currency)
        if limit is None:
            return
        cur = self.config.currencies[currency]
        used = await self.withdrawn(member_id, currency, tx=tx)
        if used + units > limit:
            left = max(0, limit - used)
            raise FormError("amount", N_(
                "This is over your withdrawal limit of {limit} {cur} per 24 hours (verification level {level}); "
                "{left} {cur} is left. Verify your identity to raise the limit."),
                limit=format_units(limit, cur.precision), cur=cur.symbol, level=level,
                left=format_units(left, cur.precision))

    async def limits(self, member_id: int) -> list[dict[str, Any]]:
        """Per currency with a wallet: the member's limit now, used and left, and the next level's limit."""
        level = await self.level(member_id)
        out = []
        for code, cur in self.config.currencies.items():
            if cur.wallet is None:
                continue
            limit = self.limit(level, code)
            used = await self.withdrawn(member_id, code)
            nxt = self.limit(max(level, 0) + 1, code)
            out.append({"currency": code, "symbol": cur.symbol, "level": level, "limit": limit, "used": used,
                        "left": None if limit is None else max(0, limit - used), "next": nxt,
                        "precision": cur.precision})
        return out

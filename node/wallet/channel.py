"""The payment channel interface: what a wallet actor needs from a coin daemon or a bank.

A *family* is one adapter class (bitcoind-compatible JSON-RPC, bank transfer, …); a *currency* is
configuration: `[currencies.<code>.wallet]` names the family in `channel` and gives its settings.
So a new coin of an existing family (Litecoin, Dogecoin next to Bitcoin) is configuration only,
and a new family is one subclass of `Channel`, registered in `node.wallet.FAMILIES`.

Amounts cross this interface as integers in the currency's smallest unit, never as floats: an
adapter converts exactly at its own edge (see `units_from_decimal` / `decimal_from_units`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from node.errors import ExchangeError


class WalletUnavailable(ExchangeError):
    """The daemon (or bank link) cannot be reached right now; nothing was done, retry later."""

    code = 3102
    status = 503


class ChannelError(Exception):
    """The daemon answered with an error: the request was understood and refused.

    `code` is the daemon's own error code (bitcoind: -5 invalid address, -6 insufficient funds …).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ChannelUnavailable(Exception):
    """The daemon could not be reached, or did not answer in time.

    `maybe_done` is True when the request may have reached the daemon before the link failed (a
    timeout, a dropped connection): the caller must then treat the outcome as unknown and reconcile,
    never simply retry a payment.
    """

    def __init__(self, message: str, *, maybe_done: bool) -> None:
        super().__init__(message)
        self.maybe_done = maybe_done


class SettingsError(Exception):
    """A family-specific setting is wrong; the message starts with the setting's name."""


@dataclass(frozen=True)
class AddressCheck:
    valid: bool
    mine: bool  # one of the exchange's own addresses: withdrawing to it would be a no-op with a fee


@dataclass(frozen=True)
class Transfer:
    """One incoming output as the daemon reports it: a candidate deposit."""

    txid: str
    vout: int
    address: str
    amount: int | None  # smallest units; None: more decimals than the currency holds (alerted, not credited)
    confirmations: int  # < 0: conflicted (double-spent) that many blocks ago; 0: unconfirmed
    block_hash: str | None
    coinbase: bool = False  # a block reward: credited only once mature


@dataclass(frozen=True)
class Scan:
    """What changed since `cursor`: transfers to be (re)examined and the cursor to store next."""

    transfers: list[Transfer]
    cursor: str | None
    height: int | None = None


@dataclass(frozen=True)
class SentTx:
    txid: str
    amount: int
    network_fee: int | None  # what the wallet paid the network, smallest units (positive)
    confirmations: int


@dataclass(frozen=True)
class Built:
    """A payment built and signed but not yet broadcast: its exact bytes and their txid.

    Stored before it is broadcast, so that whatever happens next only ever sends these bytes again:
    the same signed transaction can be accepted by the network at most once."""

    raw: str
    txid: str
    network_fee: int | None  # what the wallet pays the network, smallest units (positive)


@dataclass(frozen=True)
class TxState:
    """What the daemon's wallet says of one of its transactions now."""

    known: bool  # False: the wallet does not have it at all (never arrived, or dropped and forgotten)
    confirmations: int = 0  # < 0: conflicted (a double-spend is that deep in the chain); 0: unconfirmed
    in_mempool: bool = False  # an unconfirmed transaction the daemon would still relay and mine
    coinbase: bool = False
    mature: bool = True  # a coinbase output is spendable only after maturity (bitcoind: 100 blocks)
    block_hash: str | None = None


class PaymentRejected(Exception):
    """The daemon refused to broadcast a payment: it is certainly not in its mempool now.

    `conflict` is True when the payment can never be valid again (an input is spent by another
    transaction), False when the refusal may pass (fees, policy): then the same bytes are tried again."""

    def __init__(self, message: str, *, conflict: bool) -> None:
        super().__init__(message)
        self.conflict = conflict


class InsufficientFunds(Exception):
    """The hot wallet cannot pay this amount plus the network fee; nothing was built."""


@dataclass(frozen=True)
class ChannelInfo:
    """A few facts for the admin's status view."""

    height: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Channel:
    """Base class of every family. Subclasses set `family`, `kinds`, `settings` and override the
    methods their family supports; the rest say clearly that the family does not do that.

    `automatic` families send withdrawals themselves (coins); others (bank) wait for an admin to
    report the transfer done. `scans` families find deposits by polling (`scan`); others have
    deposits confirmed by an admin.
    """

    family: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ("coin",)
    automatic: ClassVar[bool] = True
    scans: ClassVar[bool] = True
    # name -> (required, description); values in cluster.toml are strings or integers
    settings: ClassVar[dict[str, tuple[bool, str]]] = {}
    max_precision: ClassVar[int | None] = None  # decimals the family can move exactly (bitcoind: 8)

    def __init__(self, currency: str, precision: int, settings: Mapping[str, Any]) -> None:
        self.currency = currency
        self.precision = precision
        self.options = dict(settings)

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> None:
        """Refuse unknown or missing settings before the node starts (`node.wallet.check_wallets`), naming
        the setting (`SettingsError`)."""
        for key in settings:
            if key not in cls.settings:
                known = ", ".join(sorted(cls.settings)) or "none"
                raise SettingsError(f"{key}: unknown setting for channel {cls.family!r} (known: {known})")
        for key, (required, _) in cls.settings.items():
            if required and key not in settings:
                raise SettingsError(f"{key}: missing (required by channel {cls.family!r})")

    async def open(self) -> None:
        """Check credentials and prepare connections; raises `SettingsError` if misconfigured."""

    async def close(self) -> None:
        """Release connections."""

    async def info(self) -> ChannelInfo:
        return ChannelInfo()

    async def new_address(self, member_id: int) -> str:
        raise NotImplementedError(f"channel {self.family} cannot make deposit addresses")

    async def validate_address(self, address: str) -> AddressCheck:
        raise NotImplementedError(f"channel {self.family} cannot check addresses")

    async def scan(self, cursor: str | None, depth: int) -> Scan:
        """Every transfer in blocks after `cursor` plus unconfirmed ones, and the cursor to store
        next so that transfers with fewer than `depth` confirmations are reported again."""
        raise NotImplementedError(f"channel {self.family} does not scan for deposits")

    async def balance(self) -> int | None:
        """Spendable balance of the hot wallet, or None where the family has no such notion."""
        return None

    async def build(self, address: str, amount: int, inputs: list[tuple[str, int]]) -> Built:
        """Build and sign (never broadcast) a payment of `amount` to `address`. It spends every
        output of `inputs` (those of an earlier attempt that are still unspent), so the two can
        never both confirm; raises `InsufficientFunds` when the hot wallet cannot pay it."""
        raise NotImplementedError(f"channel {self.family} does not send by itself")

    async def release(self, built: Built) -> None:
        """A built payment that will never be broadcast: free the outputs it reserved."""

    async def broadcast(self, raw: str) -> None:
        """Hand signed bytes to the network. Returns when the daemon has them (also when it had
        them already); raises `PaymentRejected` when it refuses them."""
        raise NotImplementedError(f"channel {self.family} does not send by itself")

    async def tx_state(self, txid: str) -> TxState:
        """Where one of the wallet's transactions stands (payments and deposits alike)."""
        raise NotImplementedError(f"channel {self.family} does not follow transactions")

    async def unspent_inputs(self, raw: str) -> list[tuple[str, int]]:
        """The outputs spent by the transaction `raw` that are still unspent on the chain."""
        raise NotImplementedError(f"channel {self.family} does not send by itself")

    async def watched_balance(self, addresses: list[str]) -> int:
        """What `addresses` (watch-only: cold wallets) hold on the chain now."""
        raise NotImplementedError(f"channel {self.family} does not watch addresses")

    async def find_sent(self, key: str, address: str, amount: int, since_ms: int) -> SentTx | None:
        """The payment made with `key` (or, failing labels, to `address` of `amount` since
        `since_ms`), if the wallet has it. Only for withdrawals left `processing` by a version that
        paid with one `sendtoaddress` call, whose outcome was lost with its answer."""
        raise NotImplementedError(f"channel {self.family} does not send by itself")

    async def sent(self, txid: str) -> SentTx | None:
        """A payment by txid, with the network fee the wallet paid, or None if unknown."""
        return None


def units_from_decimal(value: Decimal, precision: int) -> int:
    """Exact conversion of a daemon's decimal amount into integer units; refuses to round."""
    if not isinstance(value, Decimal):
        raise TypeError(f"amount must be parsed as Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"amount {value} is not a finite number")
    scaled = value.scaleb(precision)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"amount {value} has more than {precision} decimal places")
    return int(scaled)


def decimal_from_units(units: int, precision: int) -> Decimal:
    """Integer units as an exact Decimal with `precision` places (what a daemon is sent)."""
    return Decimal(units).scaleb(-precision).quantize(Decimal(1).scaleb(-precision))

"""Pure core: exact money, the double-entry ledger and the wallet hierarchy. No I/O."""

from cival.core.errors import CivalError
from cival.core.ledger import (
    AccountKind,
    AuditReport,
    IdempotencyConflictError,
    InsufficientFundsError,
    Ledger,
    LedgerError,
    Posting,
    Transaction,
    TxType,
)
from cival.core.money import (
    DEFAULT_QTY_STEP,
    DEFAULT_SCALE,
    AmountError,
    CurrencyMismatchError,
    Money,
    money_from_float,
    quantity_from_float,
)
from cival.core.wallets import (
    AllocationRecord,
    EntityKind,
    FillBooking,
    WalletError,
    WalletTree,
)

__all__ = [
    "DEFAULT_QTY_STEP",
    "DEFAULT_SCALE",
    "AccountKind",
    "AllocationRecord",
    "AmountError",
    "AuditReport",
    "CivalError",
    "CurrencyMismatchError",
    "EntityKind",
    "FillBooking",
    "IdempotencyConflictError",
    "InsufficientFundsError",
    "Ledger",
    "LedgerError",
    "Money",
    "Posting",
    "Transaction",
    "TxType",
    "WalletError",
    "WalletTree",
    "money_from_float",
    "quantity_from_float",
]

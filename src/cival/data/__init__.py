"""Market data: loading and validating OHLCV bars, resampling, seeded synthetic series."""

from cival.data.bars import (
    COLUMNS,
    DEFAULT_MAX_MOVE,
    DataError,
    infer_timeframe,
    load_bars,
    validate_bars,
)
from cival.data.resample import parse_timeframe, resample
from cival.data.synthetic import synthetic_bars, synthetic_regimes

__all__ = [
    "COLUMNS",
    "DEFAULT_MAX_MOVE",
    "DataError",
    "infer_timeframe",
    "load_bars",
    "parse_timeframe",
    "resample",
    "synthetic_bars",
    "synthetic_regimes",
    "validate_bars",
]

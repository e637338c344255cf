"""Sweeps on a real Ray cluster (one per module, as Ray takes seconds to start)."""

from __future__ import annotations

import pandas as pd
import pytest

from cival.backtest import sweep
from cival.data import load_bars

pytestmark = pytest.mark.slow  # every test here runs a session, a cluster or the command line of its own


@pytest.fixture(scope="module")
def btc_1h(shared_data):
    return load_bars(shared_data / "intraday_crypto" / "binance_BTCUSDT_1h.csv")


def test_local_and_ray_give_identical_results(btc_1h, local_ray):
    ray = pytest.importorskip("ray")
    grid = {"jaw_period": [10, 13, 21], "teeth_period": [6, 8], "lips_period": [3, 5]}
    local = sweep("alligator", btc_1h, grid, backend="local", chunk_size=5)
    on_ray = sweep("alligator", btc_1h, grid, backend="ray", chunk_size=5)
    assert on_ray.backend == "ray" and local.backend == "local"
    pd.testing.assert_frame_equal(local.table, on_ray.table)
    assert ray.is_initialized()  # a sweep leaves a cluster it did not start running

"""What a run writes grows with what happens, not with the bars: an agent whose buys cannot
be placed records none (it says why once), every recorded order is closed (filled or
lapsed), and the events that repeat the books are kept once, by reference."""

from __future__ import annotations

from collections import Counter

from cival.config import config_from_dict
from cival.session import run_paper, session_bars
from cival.store.sqlite import SqliteStore


def _config(path: str):
    return config_from_dict({
        "name": "growth",
        "master": {"initial_deposit": "100000", "allocation": {"policy": "fixed", "weights": {"busy": 1, "broke": 1}}},
        "farms": [
            {"name": "busy", "type": "trend_following", "runtime": {"agents": "inline"},
             "agents": [{"name": "gator", "strategy": "alligator"}, {"name": "box", "strategy": "darvas", "params": {"lookback": 10}}]},
            # One unit is a whole BTC (~60,000) and the agent gets 50,000: it can never buy.
            {"name": "broke", "type": "breakout", "agents": [{"name": "pauper", "strategy": "alligator", "sizing": {"qty_step": 1}}]},
        ],
        "data": {"source": "file", "path": path, "symbol": "BTCUSDT"},
    })


def test_orders_are_recorded_when_they_can_be_placed_and_closed_when_they_lapse(shared_data, tmp_path):
    config = _config(str(shared_data / "intraday_crypto" / "binance_BTCUSDT_1h.csv"))
    store = SqliteStore(tmp_path / "store.sqlite3")
    store.migrate()
    result = run_paper(config, bars=session_bars(config, max_bars=6000), local=True, store=store)
    run = result.run_id
    orders = store.rows("orders", run)
    fills = store.rows("fills", run)
    events = store.events(run)
    by_agent = Counter(o["agent"] for o in orders)
    # The agent that cannot buy: no order at all over 6,000 bars, and one event saying why.
    assert by_agent["pauper"] == 0
    rejected = [e for e in events if e.type == "order_rejected"]
    assert [e.entity for e in rejected] == ["agent:pauper"]
    assert "not enough cash to buy one unit (1 BTCUSDT)" in rejected[0].data["reason"]
    # The others: an order per signal the next open could fill; each fill answers one,
    # marked filled; the rest lapsed, but at most the last one, still waiting.
    status = {o["id"]: o["status"] for o in orders}
    signal_fills = [f for f in fills if f["reason"] == "signal"]
    assert len(signal_fills) > 50
    assert all(status[f["order_id"]] == "filled" for f in signal_fills)
    assert Counter(status.values())["filled"] == len(signal_fills)
    assert Counter(status.values())["open"] <= len(by_agent)
    assert set(status.values()) <= {"filled", "lapsed", "open"}
    assert len(orders) <= len(signal_fills) + Counter(status.values())["lapsed"] + len(by_agent)
    # Events that repeat the books are stored once, as references, and read back in full.
    raw = {r[0]: r[1] for r in store._db.execute(
        "SELECT type, max(length(data)) FROM events WHERE run_id = ? GROUP BY type", (run,))}
    assert raw["wallet_transaction"] < 60 and raw["order_filled"] < 60
    tx_events = [e for e in events if e.type == "wallet_transaction"]
    assert tx_events and all("postings" in e.data for e in tx_events)
    ledger = {t.seq: t for t in store.transactions(run, tx_events[-1].data["ledger"])}
    last = tx_events[-1].data
    assert last["key"] == ledger[last["tx_seq"]].idempotency_key
    assert len(last["postings"]) == len(ledger[last["tx_seq"]].postings)
    fill_events = {e.data["fill_id"]: e.data for e in events if e.type == "order_filled"}
    assert set(fill_events) == {f["id"] for f in fills}
    assert all(fill_events[f["id"]]["qty"] == f"{f['qty'].normalize():f}" for f in fills)
    store.close()

"""The operator API under load: `python bench/server.py`.

One `cival serve --local` (embedded store) on 127.0.0.1, and in this process:

1. Reads: 50 concurrent clients each reading the wallet tree and the trades of a run that
   replays bars, for a fixed time: p50/p99 latency and requests per second.
2. Streams: the same run replayed at full speed with no subscriber, then with 100 stream
   subscribers reading it from its first event to its last: the replay's time (medians of
   3, side by side) and its ratio, events per second delivered, and the lag between the
   run's end in the store and its RUN_FINISHED reaching each subscriber (p50/p99).

Targets (the issue's): p99 of reads <= 50 ms; stream lag p99 <= 100 ms; replay with 100
subscribers <= 1.2x without any.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-" + "x" * 24
CONFIG = {
    "name": "bench",
    "master": {"initial_deposit": "100000", "allocation": {"policy": "equal", "reserve_pct": 10}},
    "farms": [
        {"name": "trend", "type": "trend_following", "agents": [{"name": f"gator-{i}", "strategy": "alligator"} for i in range(3)]},
        {"name": "breakout", "type": "breakout", "agents": [{"name": f"darvas-{i}", "strategy": "darvas",
                                                             "params": {"lookback": 10 + 5 * i, "confirm": 2}} for i in range(3)]},
    ],
    "checkpoint": {"every_bars": 24},
    "data": {"source": "synthetic", "bars": 6000, "seed": 5, "timeframe": "1h"},
}


def start_server(folder: Path, local: bool = True) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), CIVAL_DATA_DIR=str(folder), CIVAL_SERVER_TOKEN=TOKEN,
               CIVAL_RATE_USER="10000000/minute", CIVAL_RATE_ADDRESS="10000000/minute")
    process = subprocess.Popen([sys.executable, "-m", "cival", "serve", *(["--local"] if local else []), "--port", str(port), "--path",
                                str(folder / "store.sqlite3")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api/v1"
    for _ in range(1200):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def api(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)


def wait_finished(client: httpx.Client, run_id: str) -> dict:
    while True:
        run = client.get(f"/runs/{run_id}").json()
        if run["status"] != "running":
            return run
        time.sleep(0.02)


def replay(url: str, subscribers: int) -> dict:
    """One full-speed replay of CONFIG, with ``subscribers`` streams reading it."""
    client = api(url)
    run_id = client.post("/runs", json={"config": CONFIG}).json()["id"]
    started = time.perf_counter()
    arrivals: list[float] = []
    counts: list[int] = []
    lock = threading.Lock()

    def subscribe() -> None:
        # Bytes, not lines: the subscribers share the machine with the server, and parsing
        # every line in Python would measure the bench's clients more than the server.
        n, tail = 0, b""
        with api(url) as own, own.stream("GET", f"/runs/{run_id}/stream", timeout=None) as response:
            for chunk in response.iter_raw():
                text = tail + chunk
                n += text.count(b"\ndata: ") - tail.count(b"\ndata: ")
                if b"event: RUN_FINISHED" in text and b"event: RUN_FINISHED" not in tail:
                    with lock:
                        arrivals.append(time.time())
                tail = text[-32:]
        with lock:
            counts.append(n)

    threads = [threading.Thread(target=subscribe) for _ in range(subscribers)]
    for t in threads:
        t.start()
    run = wait_finished(client, run_id)
    replay_seconds = time.perf_counter() - started
    for t in threads:
        t.join(300)
    delivered = time.perf_counter() - started
    finished = datetime.fromisoformat(run["finished_at"].replace("Z", "+00:00")).astimezone(UTC).timestamp()
    lags = sorted(max(0.0, a - finished) for a in arrivals)
    client.close()
    return {"seconds": replay_seconds, "events": sum(counts), "delivered_in": delivered, "lags": lags}


def reads(url: str, clients: int = 50, seconds: float = 10.0) -> dict:
    """``clients`` readers of the wallet tree and trades of a paced run, for ``seconds``."""
    control = api(url)
    paced = {**CONFIG, "data": {**CONFIG["data"], "bars": 20000}}
    run_id = control.post("/runs", json={"config": paced, "options": {"speed": 3600 * 200}}).json()["id"]
    while (control.get(f"/runs/{run_id}").json()["hosted"] or {}).get("bars_fed", 0) < 200:  # started, and trading
        time.sleep(0.1)
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def reader(i: int) -> None:
        mine = []
        with api(url) as client:
            while time.perf_counter() < stop:
                path = f"/runs/{run_id}/wallets" if i % 2 else f"/runs/{run_id}/trades"
                t0 = time.perf_counter()
                assert client.get(path).status_code == 200
                mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    control.post(f"/runs/{run_id}/stop")
    control.close()
    latencies.sort()
    return {"requests": len(latencies), "per_second": len(latencies) / elapsed,
            "p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)]}


def main() -> None:
    on_ray = "--ray" in sys.argv[1:]  # sessions on Ray actors (cival serve's default) instead of --local
    print(f"sessions {'on Ray actors' if on_ray else 'in the server process (--local)'}")
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(Path(tmp), local=not on_ray)
        try:
            r = reads(url)
            print(f"reads: 50 clients, {r['requests']:,} requests, {r['per_second']:,.0f}/s; "
                  f"p50 {1000 * r['p50']:.1f} ms, p99 {1000 * r['p99']:.1f} ms (target p99 <= 50 ms: {1000 * r['p99'] / 50:.2f}x)")
            alone, crowded = [], []
            for _ in range(3):  # side by side, alternating
                alone.append(replay(url, 0))
                crowded.append(replay(url, 100))
            a = statistics.median(x["seconds"] for x in alone)
            c = statistics.median(x["seconds"] for x in crowded)
            print(f"replay of {CONFIG['data']['bars']:,} bars, 6 agents: {a:.2f} s alone, {c:.2f} s with 100 subscribers "
                  f"(medians of 3): {c / a:.2f}x (target <= 1.2x)")
            best = sorted(crowded, key=lambda x: x["seconds"])[1]
            lags = best["lags"]
            print(f"streams: {best['events']:,} messages to 100 subscribers in {best['delivered_in']:.2f} s "
                  f"({best['events'] / best['delivered_in']:,.0f}/s); lag from the run's end to RUN_FINISHED: "
                  f"p50 {1000 * lags[len(lags) // 2]:.0f} ms, p99 {1000 * lags[int(len(lags) * 0.99)]:.0f} ms "
                  f"(target p99 <= 100 ms: {1000 * lags[int(len(lags) * 0.99)] / 100:.2f}x)")
        finally:
            process.terminate()
            process.wait(60)


if __name__ == "__main__":
    main()

"""``cival.Client``: the operator API of a running ``cival serve``, from a notebook or a script.

::

    from cival import Client

    client = Client("http://127.0.0.1:8000", name="alice", password="...")   # or token=...
    run_id = client.start("configs/demo.yaml", speed=3600)
    client.wallets(run_id)                   # a DataFrame (floats; exact=True: Decimals)
    client.halt(run_id, "trend", "too volatile")
    for event in client.stream(run_id):      # AG-UI events, as dicts, until the run ends
        ...

Every method answers what the API answers (see the README's *Serving*); an error is a
:class:`ClientError` with the API's code, message and field. ``url`` defaults to
``CIVAL_SERVER`` (else http://127.0.0.1:8000) and ``token`` to ``CIVAL_TOKEN``: an access
token, an API key, or the server's own token.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from cival.core.errors import CivalError

DEFAULT_SERVER = "http://127.0.0.1:8000"


class ClientError(CivalError):
    """The API refused a request: ``status`` (HTTP), ``code``, ``field`` (or None)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{message} ({status} {code}{f', field {field}' if field else ''})")
        self.status, self.code, self.field = status, code, field


class Client:
    """A connection to a ``cival serve`` (see the module docstring)."""

    def __init__(
        self, url: str | None = None, token: str | None = None, *, name: str | None = None, password: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        base = (url or os.environ.get("CIVAL_SERVER") or DEFAULT_SERVER).rstrip("/")
        self.url = base if base.endswith("/api/v1") else base + "/api/v1"
        self._http = httpx.Client(timeout=timeout)
        self.token = token or os.environ.get("CIVAL_TOKEN")
        self.refresh_token: str | None = None
        if name is not None:
            self.login(name, password if password is not None else os.environ.get("CIVAL_PASSWORD", ""))

    # -- plumbing -----------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = self._http.request(method, self.url + path, json=body, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise CivalError(f"cannot reach the server at {self.url}: {exc}; is `cival serve` running there?") from None
        return _answer(response)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- signing in ---------------------------------------------------------------------

    def login(self, name: str, password: str) -> dict[str, Any]:
        tokens = self._call("POST", "/auth/login", {"name": name, "password": password})
        self.token, self.refresh_token = tokens["access_token"], tokens["refresh_token"]
        return {"name": name, "expires_in": tokens["expires_in"]}

    def refresh(self) -> None:
        if self.refresh_token is None:
            raise CivalError("nothing to refresh: sign in with login(name, password) first")
        tokens = self._call("POST", "/auth/refresh", {"refresh_token": self.refresh_token})
        self.token, self.refresh_token = tokens["access_token"], tokens["refresh_token"]

    def me(self) -> dict[str, Any]:
        return self._call("GET", "/auth/me")  # type: ignore[no-any-return]

    # -- runs ---------------------------------------------------------------------------

    def runs(self) -> pd.DataFrame:
        rows = self._call("GET", "/runs")
        return pd.DataFrame(rows).set_index("id") if rows else pd.DataFrame(columns=["name", "status"])

    def run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/runs/{run_id}")  # type: ignore[no-any-return]

    def start(self, config: str | os.PathLike[str] | dict[str, Any], **options: Any) -> str:
        """Start a run of ``config`` (a YAML file's path, or a mapping); ``options``: local,
        inline, speed, batch_size, max_bars. Returns its id."""
        body: Any = Path(config).read_text(encoding="utf-8") if isinstance(config, str | os.PathLike) else config
        return self._call("POST", "/runs", {"config": body, "options": options})["id"]  # type: ignore[no-any-return]

    def report(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/runs/{run_id}/report")  # type: ignore[no-any-return]

    def wallets(self, run_id: str, exact: bool = False) -> pd.DataFrame:
        """The wallet tree: money as floats to plot, or (``exact``) Decimals."""
        tree = pd.DataFrame(self._call("GET", f"/runs/{run_id}/wallets")).set_index("name")
        convert = Decimal if exact else float
        for column in ("cash", "equity", "net_pnl", "fees"):
            tree[column] = tree[column].map(convert)
        return tree

    def trades(self, run_id: str, exact: bool = False) -> pd.DataFrame:
        frame = pd.DataFrame(self._call("GET", f"/runs/{run_id}/trades"))
        if frame.empty:
            return frame
        for column in ("entry_time", "exit_time"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        for column in ("entry_price", "exit_price", "qty", "fees", "pnl", "return"):
            frame[column] = frame[column].map(Decimal if exact else float)
        return frame

    def pause(self, run_id: str) -> dict[str, Any]:
        return self._call("POST", f"/runs/{run_id}/pause")  # type: ignore[no-any-return]

    def unpause(self, run_id: str) -> dict[str, Any]:
        return self._call("POST", f"/runs/{run_id}/resume")  # type: ignore[no-any-return]

    def stop(self, run_id: str) -> dict[str, Any]:
        return self._call("POST", f"/runs/{run_id}/stop")  # type: ignore[no-any-return]

    # -- commands -----------------------------------------------------------------------

    def command(self, run_id: str, kind: str, target: str = "master", amount: Decimal | str | None = None,
                reason: str = "", policy: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"kind": kind, "target": target, "reason": reason}
        if amount is not None:
            body["amount"] = str(amount)
        if policy is not None:
            body["policy"] = policy
        return self._call("POST", f"/runs/{run_id}/commands", body)  # type: ignore[no-any-return]

    def deposit(self, run_id: str, amount: Decimal | str) -> dict[str, Any]:
        return self.command(run_id, "deposit", amount=amount)

    def allocate(self, run_id: str, farm: str, amount: Decimal | str) -> dict[str, Any]:
        return self.command(run_id, "allocate", farm, amount)

    def collect(self, run_id: str, farm: str, amount: Decimal | str | None = None) -> dict[str, Any]:
        return self.command(run_id, "collect", farm, amount)

    def halt(self, run_id: str, name: str, reason: str = "") -> dict[str, Any]:
        return self.command(run_id, "halt", name, reason=reason)

    def release(self, run_id: str, name: str, reason: str = "") -> dict[str, Any]:
        return self.command(run_id, "resume", name, reason=reason)

    def set_policy(self, run_id: str, farm: str, policy: dict[str, Any]) -> dict[str, Any]:
        return self.command(run_id, "set_policy", farm, policy=policy)

    def kill(self, run_id: str, reason: str = "") -> dict[str, Any]:
        return self.command(run_id, "kill", reason=reason)

    # -- goals --------------------------------------------------------------------------

    def goals(self, run_id: str) -> pd.DataFrame:
        """Every goal of the run (status, progress in percent, collected, assignments), by name."""
        rows = self._call("GET", f"/runs/{run_id}/goals")
        return pd.DataFrame(rows).set_index("name") if rows else pd.DataFrame(columns=["goal_type", "status", "progress"])

    def add_goal(self, run_id: str, goal: dict[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
        """Set a new goal (a mapping as in a config's ``goals``, or a YAML/JSON file of one)."""
        if isinstance(goal, str | os.PathLike):
            from cival.config import parse_yaml

            path = Path(goal)
            goal = parse_yaml(path.read_text(encoding="utf-8"), str(path))
        return self._call("POST", f"/runs/{run_id}/goals", goal)  # type: ignore[no-any-return]

    def assign_goal(self, run_id: str, name: str, assign: list[dict[str, Any]], reason: str = "") -> dict[str, Any]:
        """Give goal ``name`` to more farms or agents (``[{"farm": "trend"}, {"agent": "g1", "weight": "0.5"}]``)."""
        return self._call("POST", f"/runs/{run_id}/goals/{name}/assign", {"assign": assign, "reason": reason})  # type: ignore[no-any-return]

    def cancel_goal(self, run_id: str, name: str, reason: str = "") -> dict[str, Any]:
        return self._call("POST", f"/runs/{run_id}/goals/{name}/cancel", {"reason": reason})  # type: ignore[no-any-return]

    # -- backtests and sweeps, as jobs ---------------------------------------------------

    def backtest(self, strategy: str, data: str, params: dict[str, Any] | None = None, *,
                 cash: Decimal | str | None = None, engine: str = "auto", **costs: Any) -> dict[str, Any]:
        """Queue a backtest of ``strategy`` on ``data``: a bars file on the server, or a
        bundled name (``cival:data/BTCUSDT-1h.csv.gz``). ``costs``: fee_bps, slippage_bps,
        fraction, stop_loss_pct, take_profit_pct, drop_bad_rows, max_move (as ``cival
        backtest`` takes them). Returns the job; :meth:`wait` follows it to its result."""
        body = {"strategy": strategy, "data": data, "params": params or {}, "engine": engine, **costs}
        if cash is not None:
            body["cash"] = str(cash)
        return self._call("POST", "/backtests", body)  # type: ignore[no-any-return]

    def sweep(self, strategy: str, data: str, grid: dict[str, Any], *, metric: str = "sharpe",
              cash: Decimal | str | None = None, **options: Any) -> dict[str, Any]:
        """Queue a sweep of ``grid``: each parameter's values as a list, or as ``--grid`` takes
        them (``"10:30:2"``, ``"8,13,21"``), ranked by ``metric``. ``options``: chunk_size, top
        (how many of the best the result lists) and the costs :meth:`backtest` takes. Returns
        the job; :meth:`wait` follows it to its result."""
        body = {"strategy": strategy, "data": data, "grid": grid, "metric": metric, **options}
        if cash is not None:
            body["cash"] = str(cash)
        return self._call("POST", "/sweeps", body)  # type: ignore[no-any-return]

    def job(self, job_id: str) -> dict[str, Any]:
        """A job: status, progress (done/total) and, once finished, its result."""
        return self._call("GET", f"/jobs/{job_id}")  # type: ignore[no-any-return]

    def jobs(self, kind: str | None = None, status: str | None = None, limit: int = 100) -> pd.DataFrame:
        """The server's jobs, newest first (``kind``: backtest or sweep; ``status``: queued,
        running, finished, failed or cancelled), one row each."""
        params = {k: v for k, v in {"kind": kind, "status": status, "limit": limit}.items() if v is not None}
        rows = [
            {"id": j["id"], "kind": j["kind"], "status": j["status"], "strategy": j["spec"]["strategy"],
             "done": j["progress"]["done"], "total": j["progress"]["total"], "submitted_by": j["submitted_by"],
             "submitted_at": j["submitted_at"], "finished_at": j["finished_at"], "error": j["error"],
             "saved_id": (j["result"] or {}).get("saved_id")}
            for j in self._call("GET", "/jobs", params=params)
        ]
        return pd.DataFrame(rows).set_index("id") if rows else pd.DataFrame(columns=["kind", "status", "done", "total"])

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued job; a running sweep stops after its chunk, a running backtest when
        its engine returns (nothing is saved). ClientError (409) for a job that has ended."""
        return self._call("POST", f"/jobs/{job_id}/cancel")  # type: ignore[no-any-return]

    def wait(self, job_id: str, timeout: float = 600.0, poll: float = 0.5) -> dict[str, Any]:
        """The job's result once it has finished (its ``saved_id`` names it in the store).
        CivalError if it failed or was cancelled (with why), or is still not done after
        ``timeout`` seconds (it goes on running: wait again, or cancel it)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] == "finished":
                return job["result"]  # type: ignore[no-any-return]
            if job["status"] in ("failed", "cancelled"):
                raise CivalError(f"job {job_id} {job['status']}: {job['error']}")
            if time.monotonic() > deadline:
                done, total = job["progress"]["done"], job["progress"]["total"]
                raise CivalError(f"job {job_id} is still {job['status']} ({done}/{total}) after {timeout:g} s; "
                                 "wait again, or cancel it (cancel_job)")
            time.sleep(poll)

    def saved(self, result_id: str) -> dict[str, Any]:
        """A saved backtest or sweep (a job's ``saved_id``, bt-... or sw-...), as ``cival report
        ID --json`` prints it: a sweep with every combination."""
        return self._call("GET", f"/results/{result_id}")  # type: ignore[no-any-return]

    # -- the stream ---------------------------------------------------------------------

    def stream(self, run_id: str, last_event_id: int | None = None) -> Iterator[dict[str, Any]]:
        """The run's AG-UI events (dicts, each with ``_id``: the sequence number of the event
        whose group it ends, else None) until the run ends; pass the last ``_id`` seen as
        ``last_event_id`` to take up where a broken connection left."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        with self._http.stream("GET", f"{self.url}/runs/{run_id}/stream", headers=headers, timeout=None) as response:
            if response.status_code != 200:
                response.read()
                _answer(response)
            message: dict[str, str] = {}
            for line in response.iter_lines():
                if line.startswith(":"):
                    continue
                if line:
                    key, _, value = line.partition(": ")
                    message[key] = value
                    continue
                if "data" in message:
                    event = json.loads(message["data"])
                    event["_id"] = int(message["id"]) if "id" in message else None
                    yield event
                message = {}


def _answer(response: httpx.Response) -> Any:
    if response.status_code < 400:
        return response.json()
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        raise ClientError(response.status_code, "http_error", response.text[:200] or response.reason_phrase) from None
    raise ClientError(response.status_code, error.get("code", "error"), error.get("message", ""), error.get("field"))


__all__ = ["Client", "ClientError"]

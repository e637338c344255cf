"""The dashboard ``cival serve`` serves at ``/``, in a real browser (Playwright driving
Debian's chromium) against a real server on 127.0.0.1 whose run replays bars: every
section, live numbers that end equal to the API's, halting a farm, a goal made with the
form (and its field's error), an allocation beyond the balance refused in the page, a
viewer without acting controls, and a stream cut from the server's side that the page
reconnects to without missing a fill. Screenshots of each section at 1440 and 390 px go
to ``$CIVAL_SCREENSHOTS`` (default: the test's temporary folder)."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.helpers import Server, run_cival

pytestmark = pytest.mark.slow

SECTIONS = ["Master Wallet", "Farms", "Goals", "Agent Fleet", "Real-time Trading", "Performance Analytics", "System Configuration"]
USERS = {"otto": ("operator", "otto-password-456"), "vera": ("viewer", "vera-password-123")}
RAW = {
    "name": "dashboard",
    "master": {"initial_deposit": "100000", "allocation": {"policy": "equal", "reserve_pct": 10}},
    "farms": [
        {"name": "trend", "type": "trend_following", "agents": [
            {"name": "gator", "strategy": "alligator"},
            {"name": "gator-fast", "strategy": "alligator",
             "params": {"jaw_period": 8, "jaw_shift": 5, "teeth_period": 5, "teeth_shift": 3, "lips_period": 3, "lips_shift": 2}}]},
        {"name": "breakout", "type": "breakout", "agents": [{"name": "darvas", "strategy": "darvas", "params": {"lookback": 10, "confirm": 2}}]},
    ],
    "checkpoint": {"every_bars": 24, "always": True},
    "data": {"source": "synthetic", "bars": 40000, "seed": 21, "timeframe": "1h"},
}


class Proxy:
    """A TCP relay in front of the server: what the browser reaches. ``cut()`` closes every
    connection it carries, as a server that drops its clients would."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.live: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the server is gone (the module's end)
                client.close()
                continue
            with self.lock:
                self.live += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self.lock:
            live, self.live = self.live, []
        for s in live:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.cut()
        self.server.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory, chromium):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("dashboard")
    for name, (role, password) in USERS.items():
        added = run_cival("users", "add", name, "--role", role, "--path", str(folder / "store.sqlite3"), cwd=folder,
                          env={**os.environ, "CIVAL_PASSWORD": password, "CIVAL_DATA_DIR": str(folder / "data")})
        assert added.returncode == 0, added.stderr
    server = Server(folder)
    status, run = server.call("POST", "/runs", {"config": RAW, "options": {"speed": 3600 * 12}})
    assert status == 201, run
    server.run_id = run["id"]  # type: ignore[attr-defined]
    proxy = Proxy(server.port)
    server.page_url = f"http://127.0.0.1:{proxy.port}/"  # type: ignore[attr-defined]
    server.proxy = proxy  # type: ignore[attr-defined]
    yield server
    proxy.close()
    server.stop()


@pytest.fixture(scope="module")
def browser(chromium):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


def _page(browser, served, name: str, width: int = 1440):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": width, "height": 900}, locale="en-US", timezone_id="Europe/Paris")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(served.page_url)
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(USERS[name][1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#master-equity", timeout=30000)
    page.errors = errors
    return page


def _amount(text: str) -> Decimal:
    return Decimal(re.sub(r"[^0-9.\-]", "", text))


def _until(condition, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    return condition()


def _shots() -> Path:
    folder = Path(os.environ.get("CIVAL_SCREENSHOTS", "") or Path(os.environ.get("TMPDIR", "/tmp")) / "cival-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_an_operator_sees_every_section_and_numbers_that_move_then_equal_the_apis(browser, served):  # type: ignore[no-untyped-def]
    page = _page(browser, served, "otto")
    assert page.text_content("#who") == "otto (operator)"
    assert _until(lambda: page.text_content("#connection") == "live"), page.text_content("#connection")
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 900})
        for heading in SECTIONS:
            page.get_by_role("link", name=heading).click()
            page.get_by_role("heading", name=heading, exact=True).wait_for(state="visible", timeout=5000)
            page.wait_for_timeout(200)
            page.screenshot(path=str(_shots() / f"{heading.lower().replace(' ', '-')}-{width}.png"))
    page.set_viewport_size({"width": 1440, "height": 900})
    page.get_by_role("link", name="Farms").click()
    first = page.text_content("[data-farm=trend] .farm-equity")
    assert _until(lambda: page.text_content("[data-farm=trend] .farm-equity") != first), "the farm's equity did not move while bars flowed"

    # Held at a boundary, the page settles on the API's numbers, to the cent.
    assert served.call("POST", f"/runs/{served.run_id}/pause")[0] == 200
    served.call("POST", f"/runs/{served.run_id}/commands", {"kind": "deposit", "amount": "1"})  # an event: the page reads again
    tree = {r["name"]: r for r in served.call("GET", f"/runs/{served.run_id}/wallets")[1]}
    page.get_by_role("link", name="Master Wallet").click()
    expected = Decimal(tree["master"]["equity"]).quantize(Decimal("0.01"))
    assert _until(lambda: _amount(page.text_content("#master-equity")) == expected), (page.text_content("#master-equity"), expected)
    assert _amount(page.text_content("#master-cash")) == Decimal(tree["master"]["cash"]).quantize(Decimal("0.01"))
    page.get_by_role("link", name="Agent Fleet").click()
    for agent in ("gator", "gator-fast", "darvas"):
        cells = page.locator(f"[data-agent='{agent}'] td").all_text_contents()
        assert _amount(cells[5]) == Decimal(tree[agent]["equity"]).quantize(Decimal("0.01")), (agent, cells)
    assert served.call("POST", f"/runs/{served.run_id}/resume")[0] == 200
    assert not page.errors, page.errors


def test_an_operator_halts_a_farm_with_its_button_and_the_audit_trail_names_them(browser, served):  # type: ignore[no-untyped-def]
    page = _page(browser, served, "otto")
    page.get_by_role("link", name="Farms").click()
    page.get_by_role("button", name="Halt breakout").click()
    status = "[data-farm=breakout] .status"
    assert _until(lambda: (page.text_content(status) or "").startswith("HALTED: halted by otto")), page.text_content(status)
    assert page.is_visible("[data-farm=breakout] .badge") and "halted" in page.get_attribute("[data-farm=breakout]", "class")
    actions = served.call("GET", f"/runs/{served.run_id}/events?type=operator_action&limit=1000")[1]["items"]
    halt = [a["data"] for a in actions if a["data"]["command"] == "halt" and a["data"]["target"] == "farm:breakout"]
    assert halt and halt[-1]["by"].startswith("otto@") and halt[-1]["status"] == "applied", actions
    page.get_by_role("link", name="System Configuration").click()
    assert _until(lambda: "farm:breakout" in page.text_content("#audit-table")), page.text_content("#audit-table")
    page.get_by_role("link", name="Farms").click()
    page.get_by_role("button", name="Resume breakout").click()
    assert _until(lambda: page.text_content(status) == "trading") and not page.is_visible("[data-farm=breakout] .badge")


def test_an_allocation_beyond_the_balance_is_refused_in_the_page_and_books_nothing(browser, served):  # type: ignore[no-untyped-def]
    page = _page(browser, served, "otto")
    before = served.call("GET", f"/runs/{served.run_id}/transactions?type=allocation&limit=1")[1]["total"]
    page.get_by_role("link", name="Farms").click()
    page.get_by_label("Amount to allocate to trend").fill("100000000")
    page.get_by_role("button", name="Allocate to trend").click()
    error = _until(lambda: page.text_content("#error") or "")
    assert "of free cash, less than the 100,000,000.00 asked" in error and page.is_visible("#error"), error
    assert served.call("GET", f"/runs/{served.run_id}/transactions?type=allocation&limit=1")[1]["total"] == before


def test_a_goal_made_with_the_form_shows_its_fields_error_then_appears_and_progresses(browser, served):  # type: ignore[no-untyped-def]
    page = _page(browser, served, "otto")
    page.get_by_role("link", name="Goals").click()
    form = page.locator("#goal-form")
    form.get_by_label("Name").fill("busy-browser")
    form.get_by_label("Trades").fill("0")
    form.get_by_role("button", name="Create goal").click()
    assert _until(lambda: "target.trades" in page.text_content("#goal-error")), page.text_content("#goal-error")
    assert "must be > 0" in page.text_content("#goal-error")
    assert form.get_by_label("Trades").get_attribute("aria-invalid") == "true"
    form.get_by_label("Trades").fill("3")
    form.get_by_role("button", name="Create goal").click()
    goal = page.locator("[data-goal='busy-browser']")
    assert _until(lambda: goal.count() == 1), "the goal did not appear"
    assert _until(lambda: float(goal.locator("progress").get_attribute("value")) > 0, timeout=60), goal.text_content()
    goals = {g["name"]: g for g in served.call("GET", f"/runs/{served.run_id}/goals")[1]}
    assert goals["busy-browser"]["assign"] == [{"farm": "trend", "weight": "1"}]


def test_a_viewer_sees_no_acting_controls_and_a_forged_command_is_refused(browser, served):  # type: ignore[no-untyped-def]
    page = _page(browser, served, "vera")
    assert page.text_content("#who") == "vera (viewer)"
    page.get_by_role("link", name="Farms").click()
    page.wait_for_selector("[data-farm=trend]")
    for section in SECTIONS:
        page.get_by_role("link", name=section).click()
        visible = [b for b in page.locator("#app button").all() if b.is_visible()]
        assert not visible, (section, [b.text_content() for b in visible])
    forged = page.evaluate(
        """async (run) => {
             const headers = {"Content-Type": "application/json", "Authorization": `Bearer ${sessionStorage.getItem("cival.access")}`};
             const body = JSON.stringify({kind: "halt", target: "farm:trend"});
             const withToken = await fetch(`/api/v1/runs/${run}/commands`, {method: "POST", headers, body});
             const withCookie = await fetch(`/api/v1/runs/${run}/commands`, {method: "POST", headers: {"Content-Type": "application/json"}, body});
             return [withToken.status, withCookie.status];
           }""",
        served.run_id,
    )
    assert forged == [403, 401], forged


def test_a_stream_cut_by_the_server_reconnects_and_misses_no_fill(browser, served):  # type: ignore[no-untyped-def]
    page = _page(browser, served, "otto")
    page.get_by_role("link", name="Real-time Trading").click()
    assert _until(lambda: page.text_content("#connection") == "live")
    assert _until(lambda: page.evaluate("window.cival.fills.length") > 0, timeout=60), "no fill arrived"
    seen = []
    page.on("console", lambda m: seen.append(m.text))
    served.proxy.cut()
    assert _until(lambda: page.text_content("#connection") in ("reconnecting…", "connecting…"), timeout=10), page.text_content("#connection")
    assert _until(lambda: page.text_content("#connection") == "live", timeout=30), page.text_content("#connection")
    # Held at a boundary: every fill of the run so far is in the page, once each (it keeps the newest 1,000).
    assert served.call("POST", f"/runs/{served.run_id}/pause")[0] == 200
    ids: list[str] = []
    while True:
        page_of = served.call("GET", f"/runs/{served.run_id}/fills?limit=1000&offset={len(ids)}")[1]
        ids += [f["id"] for f in page_of["items"]]
        if len(ids) >= page_of["total"]:
            break
    assert _until(lambda: page.evaluate("window.cival.fillIds.size") >= len(ids)), "the page did not catch up with the run's fills"
    received = page.evaluate("Array.from(window.cival.fillIds)")
    assert sorted(received) == sorted(ids), f"missed: {sorted(set(ids) - set(received))[:5]}, extra: {sorted(set(received) - set(ids))[:5]}"
    assert page.evaluate("window.cival.duplicates") == 0, "a fill was delivered twice"
    shown = page.locator("#fill-table tbody tr").count()
    assert shown == min(200, len(ids)) and page.locator("#fill-table tbody tr").first.get_attribute("data-fill") == page.evaluate("window.cival.fills[0].fill_id")
    assert served.call("POST", f"/runs/{served.run_id}/resume")[0] == 200

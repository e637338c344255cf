"""Shared fixtures. Plain functions, no class hierarchies."""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Sessions persist to the embedded store by default: the suite's go to a folder of its
# own, never to the user's data directory.
if "CIVAL_DATA_DIR" not in os.environ:
    os.environ["CIVAL_DATA_DIR"] = tempfile.mkdtemp(prefix="cival-tests-")


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (or $CIVAL_SHARED_DATA), if present."""
    configured = os.environ.get("CIVAL_SHARED_DATA")
    path = Path(configured) if configured else ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


SHIPPED = ROOT / "tests" / "data" / "market"
"""The few real files shipped for the tests (see its README), gzipped."""

_shipped_dir: Path | None = None
"""Where the shipped files were unpacked, when the full set is absent."""


def unpack_shipped(into: Path) -> Path:
    """The shipped files, gunzipped under their full-set names (the demo's bars included)."""
    import gzip

    files = {p.relative_to(SHIPPED).with_suffix(""): p for p in SHIPPED.rglob("*.csv.gz")}
    files[Path("intraday_crypto/binance_BTCUSDT_1h.csv")] = ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz"
    for name, source in files.items():
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(source, "rb") as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
    return into


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real market data for tests: ../shared/data (or $CIVAL_SHARED_DATA), else the few
    files shipped in tests/data/market; a test that needs a file not shipped skips."""
    global _shipped_dir
    path = shared_data_dir()
    if path is not None:
        return path
    if _shipped_dir is None:
        _shipped_dir = unpack_shipped(tmp_path_factory.mktemp("market-data"))
    return _shipped_dir


def _not_shipped(exc: BaseException) -> str | None:
    """The market data file an error is about, if it is one the shipped set lacks."""
    if _shipped_dir is None:
        return None
    found = re.search(re.escape(str(_shipped_dir)) + r"/([\w./-]+\.csv)", str(exc))
    return found.group(1) if found and not (_shipped_dir / found.group(1)).exists() else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):  # type: ignore[no-untyped-def]
    return (yield from _skip_unshipped())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    return (yield from _skip_unshipped())


def _skip_unshipped():  # type: ignore[no-untyped-def]
    try:
        return (yield)
    except Exception as exc:
        name = _not_shipped(exc)
        if name is None:
            raise
        pytest.skip(f"{name} is {NOT_SHIPPED}")


SERVICE_FIXTURES = {"postgres_url", "fresh_postgres_url", "redis_url", "private_postgres", "private_postgres_module", "private_redis"}
"""Fixtures that need the real PostgreSQL or Redis (the private servers need their programs)."""

SLOW_FIXTURES = {"local_ray", "private_postgres", "private_postgres_module", "private_redis"}
"""Fixtures that start a Ray cluster or a server of the test's own: seconds each."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The markers follow from what a test uses, so that none is forgotten: ``services`` on
    every test that needs PostgreSQL or Redis (by fixture, or a ``postgres`` parameter that
    asks for the database at run time), ``slow`` on every test that starts a Ray cluster
    or a server of its own (tests that run sessions or the command line are marked where
    they are written)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if names & SERVICE_FIXTURES or "postgres" in params.values():
            item.add_marker(pytest.mark.services)
        if names & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if "shared_data" in names and shared_data_dir() is None:
            missing = sorted(_unshipped_files(item))
            if missing:  # known before it runs: its subprocesses would fail on them, not skip
                item.add_marker(pytest.mark.skip(reason=f"{', '.join(missing)}: {NOT_SHIPPED}"))


NOT_SHIPPED = "not among the market data shipped in tests/data/market: ../shared/data beside the checkout (or CIVAL_SHARED_DATA) has it"

_SHARED_NAME = re.compile(r"""["']((?:binance|backtrader|backtestingpy|freqtrade_testdata|nautilus_ftx|pandasta|djia)_[\w.-]+\.csv)["']""")
"""A file of the full market data set, as tests name it."""


def _unshipped_files(item: pytest.Item) -> set[str]:
    """The full set's files a test names (in its own code or its fixtures') that do not ship."""
    import inspect

    shipped = {p.name.removesuffix(".gz") for p in SHIPPED.rglob("*.csv.gz")} | {"binance_BTCUSDT_1h.csv"}
    functions = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info is not None else ()):
        functions += [d.func for d in defs]
    module = getattr(item, "module", None)
    named: set[str] = set()
    for function in functions:
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):
            continue
        named |= set(_SHARED_NAME.findall(source))
        # ... and in the module's own helpers it calls (one level down)
        for word in set(re.findall(r"\b([a-z_]\w*)\(", source)):
            helper = getattr(module, word, None)
            if inspect.isfunction(helper) and helper.__module__ == getattr(module, "__name__", None):
                named |= set(_SHARED_NAME.findall(inspect.getsource(helper)))
    return named - shipped


POSTGRES_ADMIN_URL = os.environ.get("CIVAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


SETTINGS = {"PostgreSQL": "CIVAL_TEST_POSTGRES", "Redis": "CIVAL_TEST_REDIS"}


def service_unavailable(what: str, reason: str) -> None:
    """Skip with the reason on a developer's machine; in CI a missing service is a failure."""
    setting = SETTINGS.get(what)
    message = f"{what} is not reachable ({reason}); start it" + (f" or set {setting}" if setting else "")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI: {message}")
    pytest.skip(message)


CHROMIUM = os.environ.get("CIVAL_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser that renders pages in tests (Debian's chromium); skipped (failed in CI)
    when it is not installed."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        message = f"chromium is not installed at {CHROMIUM} (apt-get install chromium, or set CIVAL_TEST_CHROMIUM)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI: {message}")
        pytest.skip(message)
    return CHROMIUM


def rendered_dom(browser: str, page: Path, wait_ms: int = 20000) -> str:
    """The DOM of ``page`` once a headless browser ran its scripts (no network)."""
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         f"--virtual-time-budget={wait_ms}", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def wait_for(condition, timeout: float = 10.0) -> bool:
    """Poll ``condition`` until true or ``timeout`` (a bound on waiting, not a timing assertion)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for one test module (it takes seconds to start), started as Cival starts
    one (loopback only) but with token authentication off: ``RAY_AUTH_MODE=disabled``,
    set here explicitly and restored afterwards. Sessions of the module use it as it is."""
    pytest.importorskip("ray")
    from cival.rayconnect import connect

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        session = connect(None, num_cpus=2, logging_level="ERROR")
        try:
            yield session
        finally:
            session.close()


REDIS_URL = os.environ.get("CIVAL_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis (CIVAL_TEST_REDIS), pinged once; skipped (failed in CI) when away."""
    import redis

    from cival.core.urls import redact

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001 - any failure to reach it
        service_unavailable("Redis", f"{redact(REDIS_URL)}: {type(exc).__name__}: {exc}")
    return REDIS_URL


class PrivateRedis:
    """A redis-server of the test's own on a free port, which the test may stop and start
    (with ``persistent``, an append-only file keeps its streams across restarts)."""

    def __init__(self, port: int, directory: Path, persistent: bool) -> None:
        self.port = port
        self.directory = directory
        self.persistent = persistent
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            service_unavailable("redis-server", "the redis-server program is not on PATH")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.directory),
                "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        assert wait_for(up), f"redis-server on port {self.port} did not start"
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def private_redis(tmp_path, redis_url):
    server = PrivateRedis(free_port(), tmp_path, persistent=True)
    yield server
    server.stop()


class PrivatePostgres:
    """A PostgreSQL server of the test's own (initdb in a fresh folder, a free port), which
    the test may stop and start; never the shared server. As root, it runs as the
    ``postgres`` user, since PostgreSQL refuses to run as root."""

    def __init__(self) -> None:
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        found = shutil.which("pg_ctl") or (versions[-1] if versions else None)
        if found is None:
            service_unavailable("PostgreSQL", "pg_ctl/initdb not found to start a private server")
        self.bin = Path(found).parent
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="cival-pg-", dir="/tmp"))
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.directory / "data"), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-o", options, "-l", str(self.directory / "log"), "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        """Stop now, as an outage does. ``immediate``: every connection is cut at once, as
        in a crash (the server recovers from its log when it starts again); ``fast``: each
        session is told (57P01, admin shutdown) and ended, then the server shuts down
        cleanly, as a restart by an administrator does."""
        if mode not in ("immediate", "fast"):
            raise ValueError(f"stop mode {mode!r}: immediate or fast")
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", mode, "-w", "stop")

    def require_password(self, role: str) -> None:
        """Make ``role`` log in with its password (SCRAM) over TCP; every other role still
        needs none."""
        hba = self.directory / "data" / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        self._run("pg_ctl", "-D", str(self.directory / "data"), "reload")

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def private_postgres(postgres_url):
    server = PrivatePostgres()
    server.start()
    yield server
    server.remove()


class SmallDisk:
    """A small file system of the test's own (a tmpfs mounted on a folder), which a store
    fills up; ``grow()`` makes room again. Mounting needs root (CAP_SYS_ADMIN)."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True, timeout=30
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs for a disk that fills up ({done.stderr.strip() or done.returncode}): needs root")

    def grow(self, size: str = "64m") -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True, timeout=30)

    def unmount(self) -> None:
        """Unmount it; if a process still has a file open there (an actor on its way out),
        detach it now and let the kernel free it when that process is gone."""

        def unmounted() -> bool:
            return subprocess.run(["umount", str(self.path)], capture_output=True, timeout=30).returncode == 0

        if not wait_for(unmounted, timeout=10):
            subprocess.run(["umount", "--lazy", str(self.path)], check=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB disk (see SmallDisk), unmounted afterwards; skipped where it cannot be mounted."""
    disk = SmallDisk(tmp_path / "disk", "2m")
    yield disk
    disk.unmount()


@pytest.fixture(scope="module")
def private_postgres_module(postgres_url):
    """A private PostgreSQL server for a whole module (a test that stops it starts it again)."""
    server = PrivatePostgres()
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="module")
def postgres_url():
    """A fresh, empty PostgreSQL database for the module (dropped afterwards)."""
    yield from _throwaway_database()


@pytest.fixture
def fresh_postgres_url():
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    yield from _throwaway_database()


def _throwaway_database():
    import asyncio
    import uuid

    asyncpg = pytest.importorskip("asyncpg")
    name = f"cival_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        con = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server
        service_unavailable("PostgreSQL", f"{type(exc).__name__}: {exc}")
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

"""The operator API: FastAPI routes over a :class:`~cival.server.host.SessionHost`.

Versioned under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``). Every route but
``/api/v1/health`` and signing in needs ``Authorization: Bearer <credential>``: a user's
access token or API key (see :mod:`cival.server.accounts`; the user's role decides what it
may do: viewers read, operators also command, admins also start and stop runs), or the
server's own token (:func:`cival.server.server_token`), which acts as an admin. Requests
are rate-limited (:mod:`cival.server.limits`). Every error has one shape::

    {"error": {"code": "invalid_config", "message": "what is wrong and what to do",
               "field": "farms[0].agents[0].strategy", "issues": [...]}}

``field`` names the part of the request at fault (None when no one part is).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from decimal import Decimal
from typing import Any, Literal

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from cival import __version__
from cival.config import Assignment, ConfigError, config_from_dict, goal_from_dict, parse_yaml
from cival.core.errors import CivalError
from cival.data.feeds import parse_speed
from cival.server.accounts import SERVER_PRINCIPAL, Accounts, Principal, Unauthenticated
from cival.server.host import NotFound, SessionHost
from cival.server.limits import RateLimited, RateLimits
from cival.server.stream import Feeds, events, resume_point
from cival.session import Booked, Command, CommandError, SessionError

API = "/api/v1"

COOKIE = "cival_access"
"""The session cookie of a browser signed in with ``{"cookie": true}``."""

log = logging.getLogger("cival.server")


class ApiError(Exception):
    """An error answered in the API's one shape."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.extra = status, code, message, field, extra


def _error(status: int, code: str, message: str, field: str | None = None, **extra: Any) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "field": field, **extra}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 429:
        headers = {"Retry-After": str(extra.get("retry_after", 1))}
    return JSONResponse(body, status_code=status, headers=headers)


def _limited(exc: RateLimited) -> JSONResponse:
    return _error(429, "rate_limited", str(exc), retry_after=exc.retry_after)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class ErrorDetail(BaseModel):
    code: str
    """``unauthenticated``, ``forbidden``, ``not_found``, ``invalid_request``, ``invalid_config``,
    ``command_refused``, ``conflict``, ``refused``, ``rate_limited``, ``internal_error``..."""
    message: str
    """What is wrong, and what to do."""
    field: str | None = None
    """The part of the request at fault (``config.farms[0].name``, ``limit``...), if one is."""
    issues: list[dict[str, Any]] | None = None
    retry_after: int | None = None


class ErrorBody(BaseModel):
    """Every error the API answers."""

    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "refused (a rule of the books or of the session)", 401: "no valid credential", 403: "a role that may not",
        404: "no such run, route or key", 405: "method not allowed", 409: "a command the books refuse, or a run that has ended",
        422: "a request with a wrong field (the field is named)", 429: "beyond a rate limit (see Retry-After)",
        500: "the server failed (its log says why)",
    }.items()
}


# -- request bodies ------------------------------------------------------------------------


class RunOptions(BaseModel):
    """How the session runs (the config says what runs)."""

    model_config = ConfigDict(extra="forbid")

    local: bool | None = None
    """The nodes in the server's process instead of Ray actors (default: the server's)."""
    inline: bool | None = None
    speed: float | str | None = None
    """``max`` (default), or N: bar by bar at N times the bars' pace."""
    batch_size: int | None = Field(None, ge=1)
    max_bars: int | None = Field(None, ge=1)

    @field_validator("speed")
    @classmethod
    def _speed(cls, value: float | str | None) -> float | str | None:
        if value is not None:
            try:
                parse_speed(value)
            except CivalError as exc:
                raise ValueError(str(exc)) from None
        return value


class RunCreate(BaseModel):
    """A run to start: its config (a mapping as in a YAML file, or the YAML text) and options."""

    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | str
    options: RunOptions = Field(default_factory=RunOptions)


class CommandBody(BaseModel):
    """An operator command (see :class:`cival.session.Command`)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["deposit", "allocate", "collect", "halt", "resume", "set_policy", "kill"]
    target: str = Field("master", min_length=1, max_length=200)
    """A farm (allocate, collect, set_policy), a farm or agent (halt, resume), the master
    (deposit, and kill: every farm halted and flattened)."""
    amount: Decimal | None = None
    """An exact amount, as a string (``"1000.50"``)."""
    reason: str = Field("", max_length=500)
    policy: dict[str, Any] | None = None


class GoalAssign(BaseModel):
    """More farms or agents for a goal (as in a config's ``assign``)."""

    model_config = ConfigDict(extra="forbid")

    assign: list[Assignment] = Field(min_length=1, max_length=100)
    reason: str = Field("", max_length=500)


class GoalCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=500)


# -- the app ------------------------------------------------------------------------------


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    cookie: bool = False
    """Also set the access token as an HttpOnly, SameSite=Strict cookie, which opens the
    read routes and the stream for a browser (commands still need the Authorization header)."""


class Refresh(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=4096)
    cookie: bool = False
    """Also set the new access token as the session cookie (see Login.cookie)."""


class KeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field("", max_length=200)


def create_app(host: SessionHost, token: str, accounts: Accounts | None = None, limits: RateLimits | None = None) -> FastAPI:
    """The API over ``host``, opened by the server's ``token`` (compared in constant time;
    it acts as an admin) and, with ``accounts``, by users' access tokens and API keys."""
    app = FastAPI(
        title="Cival operator API", version=__version__, openapi_url=f"{API}/openapi.json", docs_url=f"{API}/docs",
        redoc_url=None, responses=ERRORS,
    )
    app.state.host = host
    rates = limits or RateLimits.from_environment()

    class PerAddress:
        """The per-address rate limit, as plain ASGI (Starlette's BaseHTTPMiddleware costs
        every request a task and a copy of its body stream)."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope.get("path") != f"{API}/health":
                client = scope.get("client")
                try:
                    rates.hit(rates.address, "requests from this address", "address", client[0] if client else "unknown")
                except RateLimited as exc:
                    await _limited(exc)(scope, receive, send)
                    return
            await self.inner(scope, receive, send)

    app.add_middleware(PerAddress)

    def principal(request: Request) -> Principal:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        value = value.strip()
        if not given and request.method == "GET" and accounts is not None and request.cookies.get(COOKIE):
            # A browser signed in with {"cookie": true}: reads only (SameSite=Strict, HttpOnly).
            try:
                return accounts.check_token(request.cookies[COOKIE])
            except Unauthenticated as exc:
                raise ApiError(401, "unauthenticated", f"the session cookie: {exc}") from None
        if scheme.lower() != "bearer" or not value:
            raise ApiError(401, "unauthenticated", "send a credential: Authorization: Bearer <access token, API key or the server's token>")
        if secrets.compare_digest(value.encode(), token.encode()):
            return Principal(SERVER_PRINCIPAL, "admin")
        if accounts is None:
            raise ApiError(401, "unauthenticated", "not this server's token (CIVAL_SERVER_TOKEN, or the file `cival serve` names at start)")
        try:
            return accounts.check_key(value) if value.startswith("cvk_") else accounts.check_token(value)
        except Unauthenticated as exc:
            raise ApiError(401, "unauthenticated", str(exc)) from None

    def require(role: str, stream: bool = False) -> Any:
        def check(request: Request) -> str:
            query = request.query_params.get("token") if stream else None
            if query and accounts is not None and not request.headers.get("authorization"):
                try:
                    who = accounts.check_stream_token(query, request.path_params.get("run_id", ""))
                except Unauthenticated as exc:
                    raise ApiError(401, "unauthenticated", str(exc), "token") from None
            else:
                who = principal(request)
            try:
                rates.hit(rates.user, f"requests by {who.name}", "user", who.name)
            except RateLimited as exc:
                raise ApiError(429, "rate_limited", str(exc), retry_after=exc.retry_after) from None
            if not who.may(role):
                raise ApiError(403, "forbidden", f"{who.name} is a {who.role}; this needs the {role} role")
            request.state.principal = who
            return f"{who.name}@{request.client.host if request.client else 'unknown'}"

        return check

    authorised = require("viewer")
    operator = require("operator")
    admin = require("admin")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.field, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        issues = [{"field": ".".join(str(p) for p in e["loc"][1:]) or None, "message": e["msg"]} for e in exc.errors()]
        first = issues[0] if issues else {"field": None, "message": "invalid request"}
        return _error(422, "invalid_request", f"{first['field'] or 'body'}: {first['message']}", first["field"], issues=issues)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = "no such route; the API is under /api/v1 (see /api/v1/openapi.json)" if exc.status_code == 404 else str(exc.detail)
        return _error(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The method and path only: headers and bodies may hold credentials.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal_error", "the server failed on this request; its log says why")

    def answer(call: Any) -> Any:
        try:
            return call()
        except NotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        except CommandError as exc:
            raise ApiError(409, "command_refused", str(exc)) from None
        except SessionError as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        except CivalError as exc:
            raise ApiError(400, "refused", str(exc)) from None

    @app.get(f"{API}/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "hosted": len(host.runs)}

    @app.get(f"{API}/runs")
    def runs(who: str = Depends(authorised)) -> list[dict[str, Any]]:
        return answer(host.summaries)  # type: ignore[no-any-return]

    @app.post(f"{API}/runs", status_code=201)
    def create_run(body: RunCreate, who: str = Depends(admin)) -> dict[str, Any]:
        try:
            raw = parse_yaml(body.config, "config") if isinstance(body.config, str) else body.config
            config = config_from_dict(raw, source="config")
        except ConfigError as exc:
            issues = [{"field": f"config.{i.path}" if i.path else "config", "message": i.message} for i in exc.issues]
            raise ApiError(422, "invalid_config", str(exc), issues[0]["field"] if issues else "config", issues=issues) from None
        options = body.options.model_dump(exclude_none=True)
        try:
            run_id = answer(lambda: host.start(config, options, by=who))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = "options." + ".".join(str(p) for p in error["loc"])
            raise ApiError(422, "invalid_request", f"{field}: {error['msg']}", field) from None
        return answer(lambda: host.summary(run_id))  # type: ignore[no-any-return]

    @app.get(f"{API}/runs/{{run_id}}")
    def run(run_id: str, who: str = Depends(authorised)) -> dict[str, Any]:
        return answer(lambda: host.summary(run_id))  # type: ignore[no-any-return]

    async def view(run_id: str, name: str) -> Response:
        published = host.published(run_id, name)  # a live run's tree and trades: no thread needed
        if published is None:
            published = await asyncio.to_thread(answer, lambda: host.view(run_id, name))
        return Response(published, media_type="application/json")

    @app.get(f"{API}/runs/{{run_id}}/report", response_model=dict[str, Any])
    async def report(run_id: str, who: str = Depends(authorised)) -> Response:
        """The session report: live for a run this server drives, else rebuilt from the store."""
        return await view(run_id, "report")

    @app.get(f"{API}/runs/{{run_id}}/wallets", response_model=list[dict[str, Any]])
    async def wallets(run_id: str, who: str = Depends(authorised)) -> Response:
        """The wallet tree: the master, then each farm and its agents (cash, equity, net P&L,
        fees, positions, trades, halted), exact decimal strings. A live run's tree is
        published by the run at most 0.1 s apart while bars flow, and at once after a
        command or a pause."""
        return await view(run_id, "wallets")

    Offset = Query(0, ge=0, le=2**62, description="items to skip")
    Limit = Query(100, ge=1, le=1000, description="items to return (at most 1,000)")

    @app.get(f"{API}/runs/{{run_id}}/transactions")
    def transactions(
        run_id: str, wallet: str | None = None, type: str | None = None, offset: int = Offset, limit: int = Limit,
        who: str = Depends(authorised),
    ) -> dict[str, Any]:
        """The run's ledger transactions, every ledger, oldest first (``wallet``: those moving
        that wallet, e.g. ``farm:trend``; ``type``: e.g. ``allocation``, ``buy``)."""
        return answer(lambda: host.transactions(run_id, wallet, type, offset, limit))  # type: ignore[no-any-return]

    @app.get(f"{API}/runs/{{run_id}}/fills")
    def fills(run_id: str, agent: str | None = None, offset: int = Offset, limit: int = Limit, who: str = Depends(authorised)) -> dict[str, Any]:
        columns = ["id", "agent", "n", "symbol", "side", "qty", "price", "fee", "notional", "reason", "at", "order_id"]
        return answer(lambda: host.table(run_id, "fills", {"agent": agent}, columns, offset, limit))  # type: ignore[no-any-return]

    @app.get(f"{API}/runs/{{run_id}}/orders")
    def orders(run_id: str, agent: str | None = None, offset: int = Offset, limit: int = Limit, who: str = Depends(authorised)) -> dict[str, Any]:
        return answer(lambda: host.table(run_id, "orders", {"agent": agent}, None, offset, limit))  # type: ignore[no-any-return]

    @app.get(f"{API}/runs/{{run_id}}/equity")
    def equity(run_id: str, entity: str | None = None, offset: int = Offset, limit: int = Limit, who: str = Depends(authorised)) -> dict[str, Any]:
        """Equity snapshots per wallet (``entity``: ``master``, ``farm:trend``, ``agent:g1``), for charts."""
        return answer(lambda: host.table(run_id, "equity_snapshots", {"entity": entity}, None, offset, limit))  # type: ignore[no-any-return]

    @app.get(f"{API}/runs/{{run_id}}/halts")
    def halts(run_id: str, offset: int = Offset, limit: int = Limit, who: str = Depends(authorised)) -> dict[str, Any]:
        return answer(lambda: host.table(run_id, "halts", None, None, offset, limit))  # type: ignore[no-any-return]

    @app.get(f"{API}/runs/{{run_id}}/allocations")
    def allocations(run_id: str, offset: int = Offset, limit: int = Limit, who: str = Depends(authorised)) -> dict[str, Any]:
        return answer(lambda: host.table(run_id, "fund_allocations", None, None, offset, limit))  # type: ignore[no-any-return]

    @app.get(f"{API}/runs/{{run_id}}/goals")
    def goals(run_id: str, who: str = Depends(authorised)) -> list[dict[str, Any]]:
        """Every goal of the run: type, target, status, progress (percent), collected, deadline,
        and its assignments (farm or agent, weight)."""
        return answer(lambda: host.goals(run_id))  # type: ignore[no-any-return]

    @app.post(f"{API}/runs/{{run_id}}/goals", status_code=201)
    def add_goal(
        run_id: str,
        body: dict[str, Any] = Body(
            ..., description="A goal, as in a config's goals: name, type, target, assign, on_complete, deadline",
            openapi_examples={"trades": {"summary": "200 trades of at least 5 profit each", "value": {
                "name": "busy", "type": "trade_volume", "target": {"trades": 200, "min_profit_per_trade": "5"},
                "assign": [{"farm": "trend"}], "on_complete": "collect_profit"}}},
        ),
        who: str = Depends(operator),
    ) -> dict[str, Any]:
        """Set a new goal on a running run: it counts the trades closed from its next
        checkpoint on. Validated as a config's goals are (422 naming the field)."""
        try:
            goal = goal_from_dict(body)
        except ConfigError as exc:
            issues = [{"field": i.path or None, "message": i.message} for i in exc.issues]
            first = issues[0] if issues else {"field": None, "message": "invalid goal"}
            raise ApiError(422, "invalid_goal", f"{first['field'] or 'goal'}: {first['message']}", first["field"], issues=issues) from None
        cmd = Command(kind="add_goal", target=goal.name, goal=goal.model_dump(mode="json", exclude_none=True), by=who)
        return answer(lambda: host.command(run_id, cmd))  # type: ignore[no-any-return]

    @app.post(f"{API}/runs/{{run_id}}/goals/{{name}}/assign")
    def assign_goal(run_id: str, name: str, body: GoalAssign, who: str = Depends(operator)) -> dict[str, Any]:
        """Give an active goal to more farms or agents; their trades count from now on."""
        assign = [a.model_dump(mode="json", exclude_none=True) for a in body.assign]
        cmd = Command(kind="assign_goal", target=name, goal={"assign": assign}, reason=body.reason, by=who)
        return answer(lambda: host.command(run_id, cmd))  # type: ignore[no-any-return]

    @app.post(f"{API}/runs/{{run_id}}/goals/{{name}}/cancel")
    def cancel_goal(run_id: str, name: str, body: GoalCancel | None = None, who: str = Depends(operator)) -> dict[str, Any]:
        """Stop following an active goal: it counts and collects nothing more."""
        cmd = Command(kind="cancel_goal", target=name, reason=body.reason if body else "", by=who)
        return answer(lambda: host.command(run_id, cmd))  # type: ignore[no-any-return]

    @app.get(f"{API}/runs/{{run_id}}/trades", response_model=list[dict[str, Any]])
    async def trades(run_id: str, who: str = Depends(authorised)) -> Response:
        """Every agent's closed trades, with its farm and name, oldest exit first."""
        return await view(run_id, "trades")

    @app.get(f"{API}/runs/{{run_id}}/events")
    def stored_events(
        run_id: str, after: int = Query(0, ge=0, le=2**62), limit: int = Limit, type: str | None = None,
        who: str = Depends(authorised),
    ) -> dict[str, Any]:
        """The run's events from the store, after sequence number ``after`` (paged)."""
        return answer(lambda: host.events(run_id, after, limit, type))  # type: ignore[no-any-return]

    @app.post(f"{API}/runs/{{run_id}}/pause")
    def pause(run_id: str, who: str = Depends(operator)) -> dict[str, Any]:
        answer(lambda: host.pause(run_id))
        return answer(lambda: host.summary(run_id))  # type: ignore[no-any-return]

    @app.post(f"{API}/runs/{{run_id}}/resume")
    def unpause(run_id: str, who: str = Depends(operator)) -> dict[str, Any]:
        answer(lambda: host.unpause(run_id))
        return answer(lambda: host.summary(run_id))  # type: ignore[no-any-return]

    @app.post(f"{API}/runs/{{run_id}}/stop")
    def stop(run_id: str, who: str = Depends(admin)) -> dict[str, Any]:
        answer(lambda: host.stop(run_id))
        return answer(lambda: host.summary(run_id))  # type: ignore[no-any-return]

    feeds = Feeds()

    @app.post(f"{API}/runs/{{run_id}}/stream-token")
    def stream_token(run_id: str, request: Request, who: str = Depends(authorised)) -> dict[str, Any]:
        """A token that opens this run's stream for 5 minutes (``GET .../stream?token=``):
        for a browser's EventSource, which cannot send an Authorization header."""
        record = answer(lambda: host.summary(run_id))
        return the_accounts().stream_token(request.state.principal, record["id"])  # type: ignore[no-any-return]

    @app.get(f"{API}/runs/{{run_id}}/stream", response_class=StreamingResponse)
    async def stream(
        run_id: str, request: Request,
        token: str | None = Query(None, max_length=4096, description="a stream token (POST .../stream-token), instead of a header"),
        last_event_id: int | None = Query(None, ge=0, le=2**62, description="as the Last-Event-ID header, for a client that cannot send it"),
        who: str = Depends(require("viewer", stream=True)),
    ) -> StreamingResponse:
        """The run's AG-UI events as Server-Sent Events, resumable with ``Last-Event-ID``
        (see :mod:`cival.server.stream`). Opened with a credential in the Authorization
        header, the session cookie of a browser signed in with ``cookie: true``, or a
        stream token in ``?token=``."""
        try:
            after = resume_point(request.headers.get("last-event-id"))
        except CivalError as exc:
            raise ApiError(422, "invalid_request", str(exc), "Last-Event-ID") from None
        if last_event_id is not None and request.headers.get("last-event-id") is None:
            after = last_event_id
        record = await asyncio.to_thread(answer, lambda: host.summary(run_id))

        def running() -> bool:
            hosted = host.runs.get(record["id"])
            return hosted is not None and not hosted.done

        def attach(callback: Any) -> Any:
            hosted = host.runs.get(record["id"])
            relay = hosted.session.relay if hosted is not None and not hosted.done else None
            if relay is None:
                return None
            relay.listeners.append(callback)
            return lambda: callback in relay.listeners and relay.listeners.remove(callback)

        feed = feeds.feed(host.where, record["id"], running, attach)
        return StreamingResponse(
            events(feed, after, request.is_disconnected), media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.post(f"{API}/runs/{{run_id}}/commands")
    def command(run_id: str, body: CommandBody, who: str = Depends(operator)) -> dict[str, Any]:
        if body.amount is not None and not body.amount.is_finite():
            raise ApiError(422, "invalid_request", "amount: give a finite decimal, as a string", "amount")
        cmd = Command(kind=body.kind, target=body.target, amount=body.amount, reason=body.reason, policy=body.policy, by=who)
        result = answer(lambda: host.command(run_id, cmd))
        return result.as_dict() if isinstance(result, Booked) else result  # type: ignore[no-any-return]

    # -- accounts -------------------------------------------------------------------

    def the_accounts() -> Accounts:
        if accounts is None:
            raise ApiError(404, "not_found", "this server has no user accounts")
        return accounts

    @app.post(f"{API}/auth/login")
    def login(body: Login, request: Request, response: Response) -> dict[str, Any]:
        try:
            rates.hit(rates.login, "sign-in attempts from this address", "login-address", _address(request))
            rates.hit(rates.login, f"sign-in attempts as {body.name}", "login-name", body.name)
        except RateLimited as exc:
            raise ApiError(429, "rate_limited", str(exc), retry_after=exc.retry_after) from None
        try:
            who = the_accounts().sign_in(body.name, body.password)
        except Unauthenticated as exc:
            raise ApiError(401, "unauthenticated", str(exc)) from None
        tokens = the_accounts().tokens(who)
        if body.cookie:
            set_cookie(request, response, tokens)
        return tokens

    @app.post(f"{API}/auth/logout")
    def logout(response: Response) -> dict[str, Any]:
        """Forget the session cookie (tokens themselves end when they expire)."""
        response.delete_cookie(COOKIE, path=API, httponly=True, samesite="strict")
        return {"signed_out": True}

    @app.post(f"{API}/auth/refresh")
    def refresh(body: Refresh, request: Request, response: Response) -> dict[str, Any]:
        try:
            who = the_accounts().check_token(body.refresh_token, "refresh")
        except Unauthenticated as exc:
            raise ApiError(401, "unauthenticated", str(exc)) from None
        tokens = the_accounts().tokens(who)
        if body.cookie:
            set_cookie(request, response, tokens)
        return tokens

    def set_cookie(request: Request, response: Response, tokens: dict[str, Any]) -> None:
        response.set_cookie(
            COOKIE, tokens["access_token"], max_age=tokens["expires_in"], path=API, httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )

    @app.get(f"{API}/auth/me")
    def me(request: Request, who: str = Depends(authorised)) -> dict[str, Any]:
        p = request.state.principal
        return {"name": p.name, "role": p.role}

    @app.post(f"{API}/keys", status_code=201)
    def create_key(body: KeyBody, request: Request, who: str = Depends(authorised)) -> dict[str, Any]:
        if request.state.principal.name == SERVER_PRINCIPAL:
            raise ApiError(403, "forbidden", "API keys belong to users: sign in as one (cival users add, then /auth/login)")
        return the_accounts().create_key(request.state.principal, body.label)

    @app.get(f"{API}/keys")
    def keys(request: Request, who: str = Depends(authorised)) -> list[dict[str, Any]]:
        return the_accounts().keys(request.state.principal)

    @app.delete(f"{API}/keys/{{key_id}}")
    def revoke_key(key_id: str, request: Request, who: str = Depends(authorised)) -> dict[str, Any]:
        answer(lambda: the_accounts().revoke_key(request.state.principal, key_id))
        return {"id": key_id, "revoked": True}

    # -- the dashboard (static files shipped in the package) ------------------------------
    static = Path(__file__).with_name("static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(static / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=static), name="static")

    # -- backtest and sweep jobs (cival.server.jobs; the runner stops with the app) ---------
    from cival.server.jobs import JobRunner, job_routes

    app.state.jobs = JobRunner(host.where)
    app.include_router(job_routes(app.state.jobs, authorised, operator, ApiError))

    return app


__all__ = ["API", "ApiError", "CommandBody", "RunCreate", "RunOptions", "create_app"]

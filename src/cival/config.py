"""Cluster configuration: pydantic models, a strict YAML loader and readable errors.

A config describes one cluster: the master wallet, its farms and their agents, the
goals, risk limits, where bars come from, and where results go. Unknown keys and
duplicate keys are errors, never ignored. :func:`load_config` returns a validated
:class:`ClusterConfig` or raises :class:`ConfigError` listing *every* problem it
found, each with its path (``farms[1].agents[0].params.jaw_period: must be > 0``).

Amounts are exact Decimals. A YAML number such as ``100000.50`` is read through its
shortest decimal representation, so it means exactly what was written.
"""

from __future__ import annotations

import difflib
import os
import reprlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib import resources
from itertools import islice
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from cival.core.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS
from cival.core.errors import CivalError
from cival.core.fields import (
    BookAmount,
    ExactDecimal,
    FiniteFloat,
    QuantityStep,
    WholeNumber,
)
from cival.core.money import DEFAULT_QTY_STEP
from cival.core.urls import url_secrets
from cival.data.bars import CSV_SUFFIXES, DEFAULT_MAX_MOVE, PARQUET_SUFFIXES
from cival.data.synthetic import MAX_SYNTHETIC_BARS
from cival.strategies import PARAMS_BY_STRATEGY

# -- errors -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


MAX_ISSUES = 50
"""Problems a ConfigError lists; beyond them it says how many more there are."""

MAX_ISSUE_TEXT = 300
"""Characters of one problem's path or message shown (a key or value may be huge)."""


class ConfigError(CivalError):
    """A config could not be read or is invalid; ``issues`` lists the problems found.

    At most :data:`MAX_ISSUES` are listed (``issues``); ``total`` counts them all, and the
    message ends with "... and K more" when some were left out.
    """

    def __init__(self, source: str, issues: Sequence[ConfigIssue], total: int | None = None):
        self.source = source
        self.issues = [ConfigIssue(_clip(i.path), _clip(i.message)) for i in list(issues)[:MAX_ISSUES]]
        self.total = max(total if total is not None else len(issues), len(self.issues))
        n = self.total
        lines = [f"  {issue}" for issue in self.issues]
        if n > len(self.issues):
            lines.append(f"  ... and {n - len(self.issues):,} more")
        super().__init__(f"{source}: {n:,} error{'s' if n != 1 else ''}\n" + "\n".join(lines))


def _clip(text: str, limit: int = MAX_ISSUE_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- field types ------------------------------------------------------------------------


Amount = Annotated[BookAmount, Field(gt=0)]
"""A positive amount of money the books can hold (below 10**15, at most 8 decimal places)."""
PositiveNumber = Annotated[ExactDecimal, Field(gt=0)]
Percent = Annotated[ExactDecimal, Field(ge=0, lt=100)]
Fraction = Annotated[ExactDecimal, Field(gt=0, le=1)]
PercentLimit = Annotated[ExactDecimal, Field(gt=0, le=100)]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME_RULE = "must start with a letter or digit and hold only letters, digits, '_', '.' or '-' (at most 64)"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Symbol = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}$")]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- allocation -------------------------------------------------------------------------


class EqualPolicy(StrictModel):
    """Split the parent's cash equally among its children, after keeping ``reserve_pct`` back."""

    policy: Literal["equal"]
    reserve_pct: Percent = Decimal(0)


class FixedPolicy(StrictModel):
    """Split by fixed relative weights (one per child, by name), after keeping ``reserve_pct`` back."""

    policy: Literal["fixed"]
    weights: dict[Name, PositiveNumber] = Field(min_length=1)
    """Child name -> relative weight (they need not sum to 1)."""
    reserve_pct: Percent = Decimal(0)


Share = Annotated[ExactDecimal, Field(ge=0, le=1)]


class _LimitedPolicy(StrictModel):
    reserve_pct: Percent = Decimal(0)
    min_share: Share = Decimal(0)
    """Least share of what is distributed that each child gets (a fraction)."""
    max_share: Share = Decimal(1)
    """Most share of what is distributed that each child may get (a fraction)."""

    @model_validator(mode="after")
    def _ordered(self) -> _LimitedPolicy:
        if self.min_share > self.max_share:
            raise ValueError(f"min_share ({self.min_share}) must not exceed max_share ({self.max_share})")
        return self


class InverseVolatilityPolicy(_LimitedPolicy):
    """Split in proportion to ``1 / std`` of each child's bar returns over ``lookback_bars``."""

    policy: Literal["inverse_volatility"]
    lookback_bars: WholeNumber = Field(100, ge=2, le=1_000_000)


class PerformancePolicy(_LimitedPolicy):
    """Split in proportion to ``max(score - floor, 0)``, the score being each child's trailing
    Sharpe ratio or return over ``lookback_bars``; ``min_share`` lets a new child prove itself."""

    policy: Literal["performance"]
    metric: Literal["sharpe", "return"] = "sharpe"
    lookback_bars: WholeNumber = Field(100, ge=2, le=1_000_000)
    floor: FiniteFloat = 0.0
    min_share: Share = Decimal("0.05")


AllocationPolicy = Annotated[
    Union[EqualPolicy, FixedPolicy, InverseVolatilityPolicy, PerformancePolicy], Field(discriminator="policy")
]


class RebalanceConfig(StrictModel):
    """Re-split by the allocation policy every ``every_bars`` bars (off when not given).
    Only free cash moves, unless ``liquidate`` asks to sell positions (at the next open)."""

    every_bars: WholeNumber | None = Field(None, gt=0)
    liquidate: bool = False


# -- agents and farms -------------------------------------------------------------------


class SizingConfig(StrictModel):
    """How an agent sizes an entry: ``fraction`` of its cash, quantities in steps of ``qty_step``."""

    fraction: Fraction = Decimal(1)
    qty_step: QuantityStep = DEFAULT_QTY_STEP


class AgentRiskConfig(StrictModel):
    """An agent's own limits, over the cluster's ``risk`` (the fill model's stop rules)."""

    max_position_fraction: Fraction | None = None
    stop_loss_pct: Annotated[ExactDecimal, Field(gt=0, lt=100)] | None = None
    take_profit_pct: Annotated[ExactDecimal, Field(gt=0)] | None = None


class _AgentBase(StrictModel):
    name: Name
    symbol: Symbol | None = None
    """The instrument traded: the data's symbol (the default). A cluster trades one
    instrument, so naming another is refused."""
    sizing: SizingConfig = Field(default_factory=SizingConfig)
    risk: AgentRiskConfig = Field(default_factory=AgentRiskConfig)


def _agent_model(strategy: str, params: type[BaseModel]) -> type[_AgentBase]:
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{strategy.title()}Agent",
        __base__=_AgentBase,
        strategy=(Literal[strategy], ...),
        params=(params, Field(default_factory=params)),
    )


AGENT_MODELS = {name: _agent_model(name, params) for name, params in PARAMS_BY_STRATEGY.items()}
AgentConfig = Annotated[Union[tuple(AGENT_MODELS.values())], Field(discriminator="strategy")]  # type: ignore[valid-type]

FarmType = Literal["trend_following", "breakout", "price_action"]


class FarmRuntime(StrictModel):
    """Where a farm's agents run: one Ray actor each (``actors``, the default), or inside the
    farm's own process (``inline``: same code and results, how hundreds of agents fit on
    one machine)."""

    agents: Literal["actors", "inline"] = "actors"


class FarmConfig(StrictModel):
    name: Name
    type: FarmType
    allocation: AllocationPolicy = Field(default_factory=lambda: EqualPolicy(policy="equal"))
    rebalance: RebalanceConfig = Field(default_factory=RebalanceConfig)
    runtime: FarmRuntime = Field(default_factory=FarmRuntime)
    agents: list[AgentConfig] = Field(min_length=1)  # type: ignore[valid-type]

    @property
    def inline(self) -> bool:
        return self.runtime.agents == "inline"


class MasterConfig(StrictModel):
    name: Name = "master"
    base_currency: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9]{2,9}$")] = "USD"
    initial_deposit: Amount
    allocation: AllocationPolicy = Field(default_factory=lambda: EqualPolicy(policy="equal"))
    rebalance: RebalanceConfig = Field(default_factory=RebalanceConfig)

    @field_validator("base_currency", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


# -- goals ------------------------------------------------------------------------------


class Assignment(StrictModel):
    """A goal's link to one farm or one agent, with the weight of its contribution."""

    farm: Name | None = None
    agent: Name | None = None
    weight: Fraction = Decimal(1)

    @model_validator(mode="after")
    def _one_target(self) -> Assignment:
        if (self.farm is None) == (self.agent is None):
            raise ValueError("name exactly one of 'farm' or 'agent'")
        return self


class Deadline(StrictModel):
    """After this many bars, or at this time, an unmet goal has failed."""

    bars: WholeNumber | None = Field(None, gt=0)
    time: datetime | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Deadline:
        if (self.bars is None) == (self.time is None):
            raise ValueError("give exactly one of 'bars' or 'time'")
        if self.time is not None and self.time.tzinfo is None:
            raise ValueError("time needs a time zone, e.g. 2025-06-30T00:00:00Z")
        return self


class TradeVolumeTarget(StrictModel):
    """``trades`` closed trades, each (if set) with at least ``min_profit_per_trade`` profit."""

    trades: WholeNumber = Field(gt=0)
    min_profit_per_trade: Amount | None = None


class ProfitTarget(StrictModel):
    """Realised P&L of at least ``profit``."""

    profit: Amount


class PerformanceTarget(StrictModel):
    """Sharpe ratio and/or win rate reached after at least ``min_trades`` closed trades."""

    min_sharpe: FiniteFloat | None = None
    min_win_rate: Annotated[FiniteFloat, Field(gt=0, le=1)] | None = None
    min_trades: WholeNumber = Field(1, gt=0)

    @model_validator(mode="after")
    def _some_criterion(self) -> PerformanceTarget:
        if self.min_sharpe is None and self.min_win_rate is None:
            raise ValueError("give min_sharpe, min_win_rate or both")
        return self


class _GoalBase(StrictModel):
    name: Name
    assign: list[Assignment] = Field(min_length=1)
    on_complete: Literal["collect_profit", "collect_all", "none"] = "collect_profit"
    deadline: Deadline | None = None


class TradeVolumeGoal(_GoalBase):
    type: Literal["trade_volume"]
    target: TradeVolumeTarget


class ProfitTargetGoal(_GoalBase):
    type: Literal["profit_target"]
    target: ProfitTarget


class StrategyPerformanceGoal(_GoalBase):
    type: Literal["strategy_performance"]
    target: PerformanceTarget


GoalConfig = Annotated[
    Union[TradeVolumeGoal, ProfitTargetGoal, StrategyPerformanceGoal], Field(discriminator="type")
]


# -- risk, costs, data, infrastructure ---------------------------------------------------


class CostsConfig(StrictModel):
    """Trading costs of paper fills, as in ``cival backtest``: fees and adverse slippage in
    basis points of the notional / price."""

    fee_bps: Annotated[FiniteFloat, Field(ge=0, lt=10_000)] = DEFAULT_FEE_BPS
    slippage_bps: Annotated[FiniteFloat, Field(ge=0, lt=10_000)] = DEFAULT_SLIPPAGE_BPS


class RiskConfig(StrictModel):
    max_position_fraction: Fraction = Decimal(1)
    """Largest share of an agent's equity one position may take."""
    stop_loss_pct: Annotated[ExactDecimal, Field(gt=0, lt=100)] | None = None
    farm_max_drawdown_pct: PercentLimit | None = None
    master_daily_loss_pct: PercentLimit | None = None


Timeframe = Annotated[str, Field(pattern=r"^[1-9][0-9]*(s|m|h|d|w)$")]


MaxMove = Annotated[FiniteFloat, Field(gt=1)]


BUNDLED = "cival:"
"""The prefix of a data file shipped with Cival: ``cival:data/BTCUSDT-1h.csv.gz``."""


def _bundled_root() -> Path | None:
    """The folder of the configs shipped with Cival: the copy inside the installed package,
    else the source checkout's (an editable install), else None."""
    packaged = resources.files("cival").joinpath("configs")
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[2] / "configs"
    return checkout if checkout.is_dir() else None


def bundled_data() -> dict[str, Path]:
    """The bars files shipped with Cival, by the name a config gives them
    (``cival:data/BTCUSDT-1h.csv.gz``), in name order."""
    root = _bundled_root()
    if root is None or not (root / "data").is_dir():
        return {}
    suffixes = CSV_SUFFIXES + PARQUET_SUFFIXES
    files = sorted(p for p in (root / "data").iterdir() if p.is_file() and p.name.lower().endswith(suffixes))
    return {f"{BUNDLED}data/{p.name}": p for p in files}


def _bundled_path(name: str) -> Path:
    """The file of a bundled data name; ValueError listing what ships when there is none."""
    shipped = bundled_data()
    if name in shipped:
        return shipped[name]
    if not shipped:
        raise ValueError(f"no data ships with this installation of Cival, so {name!r} cannot be found; "
                         "reinstall cival, or give the path of a bars file")
    raise ValueError(
        f"no bundled data named {name!r}; Cival ships {_listing(list(shipped))} "
        "(or give the path of a bars file, relative to the config's folder)"
    )


def resolve_data_path(path: str, base: Path | None) -> Path:
    """The file a data ``path`` names: a bundled name (``cival:...``, see :func:`bundled_data`)
    is found inside the package; any other relative path is read from the folder of the config
    file ``base`` (when known). ValueError for a bundled name that does not ship."""
    if path.startswith(BUNDLED):
        return _bundled_path(path)
    resolved = Path(path).expanduser()
    if not resolved.is_absolute() and base is not None:
        resolved = base.parent / resolved
    return resolved


class FileData(StrictModel):
    """Bars replayed from a CSV or Parquet file; ``path`` is relative to the config file, or
    names a file shipped with Cival (``cival:data/BTCUSDT-1h.csv.gz``)."""

    source: Literal["file"]
    path: str = Field(min_length=1)
    symbol: Symbol | None = None
    """Defaults to the file's name up to its first dot."""
    timeframe: Timeframe | None = None
    max_move: MaxMove | None = DEFAULT_MAX_MOVE
    """A row whose prices move beyond this many times the previous close, up or down, is
    refused as implausible (see cival.data.bars.DEFAULT_MAX_MOVE); null turns the check off."""

    @field_validator("path")
    @classmethod
    def _shipped(cls, value: str) -> str:
        if value.startswith(BUNDLED):
            _bundled_path(value)
        return value


class SyntheticData(StrictModel):
    """Seeded synthetic bars, for demos and tests with no data at hand."""

    source: Literal["synthetic"]
    symbol: Symbol = "SYN"
    bars: WholeNumber = Field(5000, gt=0)
    seed: WholeNumber = Field(7, ge=0)
    timeframe: Timeframe = "1h"
    start_price: Amount = Decimal(100)
    max_move: MaxMove | None = None
    """As for files; off by default (seeded bars never jump)."""

    @field_validator("bars")
    @classmethod
    def _bounded(cls, value: int) -> int:
        if value > MAX_SYNTHETIC_BARS:
            raise ValueError(
                f"{value:,} bars is more than {MAX_SYNTHETIC_BARS:,}: every bar is held in memory, by the session "
                "and by each agent's strategy; use fewer"
            )
        return value


DataConfig = Annotated[Union[FileData, SyntheticData], Field(discriminator="source")]


def data_symbol(data: FileData | SyntheticData) -> tuple[str, str]:
    """The symbol of the data's bars, and where it comes from (for messages): ``data.symbol``,
    else, for a file, its name up to the first dot."""
    if isinstance(data, FileData):
        if data.symbol is None:
            return Path(data.path).name.split(".")[0], "named after the data file; set data.symbol to name it otherwise"
        return data.symbol, "data.symbol"
    if "symbol" not in data.model_fields_set:
        return data.symbol, "synthetic data's default; set data.symbol to name it otherwise"
    return data.symbol, "data.symbol"


def symbol_issues(agents: Iterable[tuple[str, str | None]], symbol: str, whence: str) -> Iterable[ConfigIssue]:
    """Agents (path, the symbol they name, None for none) naming a symbol other than ``symbol``,
    that of the bars (``whence`` says where it comes from). Until several instruments are
    supported a cluster trades one: an agent naming another would trade these bars' prices
    under that name. An agent naming none trades ``symbol``."""
    for path, named in agents:
        if named is not None and named != symbol:
            yield ConfigIssue(
                f"{path}.symbol",
                f"no data for {named!r}; symbols available: {symbol!r} ({whence}); a cluster trades one "
                f"instrument: leave symbol out to trade {symbol!r}, or give data of {named!r}",
            )


def _check_url(value: str | None, schemes: tuple[str, ...], env: str, elsewhere: str = "") -> str | None:
    """The URL if it is one of ``schemes`` and holds no secret (see cival.core.urls); the
    messages never repeat the URL, which may hold one."""
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        secrets = url_secrets(value)
    except ValueError:
        raise ValueError(f"is not a valid URL; write it as {schemes[0]}://host:port/...") from None
    if parts.scheme not in schemes:
        raise ValueError(f"must start with {' or '.join(s + '://' for s in schemes)} (or be left out for embedded)")
    if secrets:
        what = ", ".join("a password" if s == "password" else f"the parameter {s.rstrip('=')!r}" for s in secrets)
        raise ValueError(
            f"holds a secret ({what}); keep secrets out of config files: set {env} in the environment instead{elsewhere}"
        )
    return value


class StorageConfig(StrictModel):
    """Where results are persisted. No URL (the default): the embedded store, a SQLite
    file at ``path`` (relative to the config file; default: in the user's data directory).
    ``migrate`` applies pending schema versions when a session starts."""

    url: str | None = None
    path: str | None = None
    migrate: bool = True

    @field_validator("url")
    @classmethod
    def _postgres(cls, value: str | None) -> str | None:
        return _check_url(value, ("postgresql", "postgres"), "DATABASE_URL", " (or the password alone in PGPASSWORD or a .pgpass file)")


class StreamsConfig(StrictModel):
    """Where events are streamed. No URL (the default): the in-process bus. ``buffer``
    bounds the events kept while Redis cannot be reached (the oldest are dropped, counted
    and reported beyond it)."""

    url: str | None = None
    buffer: WholeNumber = Field(100_000, gt=0)

    @field_validator("url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        return _check_url(value, ("redis", "rediss"), "REDIS_URL")


class CheckpointConfig(StrictModel):
    """Goals are evaluated (and their collections made) every ``every_bars`` bars; replay
    batches end on these checkpoints, so results do not depend on the batch size. A run
    takes checkpoints when its config has goals, risk limits or scheduled rebalancing, or
    when ``always`` is set (so that goals can be added while it runs)."""

    every_bars: WholeNumber = Field(100, gt=0)
    always: bool = False
    """Take checkpoints even with no goal, risk limit or rebalancing in the config."""


class ClusterConfig(StrictModel):
    """A whole cluster: master wallet, farms, agents, goals, risk, data and infrastructure."""

    version: Literal[1] = 1
    name: Name
    master: MasterConfig
    farms: list[FarmConfig] = Field(min_length=1)
    goals: list[GoalConfig] = Field(default_factory=list)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    costs: CostsConfig = Field(default_factory=CostsConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    data: DataConfig
    storage: StorageConfig = Field(default_factory=StorageConfig)
    streams: StreamsConfig = Field(default_factory=StreamsConfig)

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this config was read from, if any."""
        return self._source

    def agents(self) -> list[tuple[FarmConfig, Any]]:
        """Every (farm, agent) pair, in config order."""
        return [(farm, agent) for farm in self.farms for agent in farm.agents]

    def storage_path(self) -> Path | None:
        """The embedded store file, resolved against the config file's folder (None: the default)."""
        if self.storage.path is None:
            return None
        path = Path(self.storage.path).expanduser()
        if not path.is_absolute() and self._source is not None:
            path = self._source.parent / path
        return path

    def data_path(self) -> Path | None:
        """The data file (None for synthetic data): a bundled name's file inside the package,
        else the path resolved against the config file's folder."""
        if not isinstance(self.data, FileData):
            return None
        try:
            return resolve_data_path(self.data.path, self._source)
        except ValueError as exc:  # only for a config built without validation
            raise ConfigError(str(self._source or "<config>"), [ConfigIssue("data.path", str(exc))]) from None


# -- loading ----------------------------------------------------------------------------

MAX_CONFIG_BYTES = 1 << 20
"""Largest config file read (1 MiB): a cluster of the largest size allowed fits in far less."""

MAX_ALIASES = 100
"""Alias uses (``*name``) a config may hold."""

MAX_DEPTH = 32
"""Levels of nesting a config may have (the deepest real one has about eight)."""

MAX_VALUES = 1_000_000
"""Values (scalars, lists, mappings) a config may hold once every alias is expanded: an
alias is cheap to parse but stands for a copy of what it names, and validating or
printing those copies costs what the expanded config would."""

MAX_FARMS = 1_000
MAX_AGENTS = 10_000
"""Agents in all farms together."""
MAX_GOALS = 1_000
MAX_ASSIGNMENTS = 10_000
"""Goal assignments in all goals together."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one, and bounds
    what a small file can make: alias uses, nesting depth, the size of the document once
    aliases are expanded (see MAX_ALIASES, MAX_DEPTH, MAX_VALUES). Each bound is checked
    while the document is composed, before anything is built from it."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._values: dict[int, int] = {}
        """id(node) -> values it stands for with its aliases expanded (nodes live as long as the document)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.composer.ComposerError(
                    None, None,
                    f"more than {MAX_ALIASES} aliases (*{_short_name(event.anchor)} is one too many); "
                    "write the repeated parts out",
                    event.start_mark,
                )
            node = super().compose_node(parent, index)
            if id(node) not in self._values:
                raise yaml.composer.ComposerError(
                    None, None,
                    f"alias *{_short_name(event.anchor)} is used inside the value it names; a config cannot refer to itself",
                    event.start_mark,
                )
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_DEPTH} levels deep; flatten the config", self.peek_event().start_mark
            )
        node = super().compose_node(parent, index)
        self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        values = 1 + sum(self._values[id(child)] for child in children)
        if values > MAX_VALUES:
            raise yaml.composer.ComposerError(
                None, None,
                f"with its aliases expanded, the value starting here holds more than {MAX_VALUES:,} values; "
                "use fewer aliases of aliases",
                node.start_mark,
            )
        self._values[id(node)] = values
        return node

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)  # type: ignore[no-any-return]
        except ValueError:  # Python refuses to read more than 4,300 digits
            raise yaml.constructor.ConstructorError(
                None, None, f"the number {_short_name(node.value)} has too many digits", node.start_mark
            ) from None


def _short_name(text: str) -> str:
    return text if len(text) <= 30 else text[:27] + "..."


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` merges are resolved (and may be overridden) by the base loader
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain name, not a list or mapping", key_node.start_mark
            ) from None
        if key in seen:
            first = seen[key]
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {_shown(key)} (first at line {first.line + 1}); each key may appear once",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; syntax errors, duplicate keys and documents beyond the loader's
    bounds (size, aliases, depth: see :class:`_StrictLoader`) raise ConfigError with the line."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(source, [_too_large(len(text), "characters")])
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"
        problem = exc.problem or str(exc)
        raise ConfigError(source, [ConfigIssue("", f"YAML error at {where}: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [ConfigIssue("", f"YAML error: {exc}")]) from None


def _too_large(size: int, unit: str) -> ConfigIssue:
    return ConfigIssue(
        "", f"holds {size:,} {unit} or more; a config may hold at most {MAX_CONFIG_BYTES:,} "
        "(1 MiB): check that this is the config file"
    )


def load_config(path: str | os.PathLike[str]) -> ClusterConfig:
    """Read and validate a cluster config file; raise ConfigError listing the problems
    (the first :data:`MAX_ISSUES` of them). Files over :data:`MAX_CONFIG_BYTES` are refused
    unread."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as f:
            # Read one byte past the limit rather than trusting the size a special file reports.
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(source, [_too_large(len(raw), "bytes")])
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [ConfigIssue("", "file not found; check the path")]) from None
    except IsADirectoryError:
        raise ConfigError(source, [ConfigIssue("", "is a folder; give the path of a .yaml file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read: {exc}")]) from None
    return config_from_dict(parse_yaml(text, source), source=source, base=path.resolve())


def config_from_dict(data: Any, source: str = "<config>", base: Path | None = None) -> ClusterConfig:
    """Validate already-parsed config data; ``base`` is the config file (for relative paths).

    The numbers of farms, agents, goals and goal assignments are checked on the raw data
    first (at most MAX_FARMS, MAX_AGENTS, MAX_GOALS, MAX_ASSIGNMENTS), so that an oversized
    config is refused before each of its items is validated.
    """
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ConfigError(source, [ConfigIssue("", f"the file is {kind}; expected a mapping with master, farms, data...")])
    too_many = list(_counts(data))
    if too_many:
        raise ConfigError(source, too_many)
    try:
        config = ClusterConfig.model_validate(data)
    except ValidationError as exc:
        # Every field error, and with them the checks across fields on whatever parts did
        # parse: one pass reports all that can be known.
        errors = exc.errors()
        issues = [_issue(err) for err in errors[:MAX_ISSUES]]
        checks = _cross_checks(_Parts.from_raw(data, base), _Hints(MAX_ISSUES))
        crossed = list(islice(checks, MAX_ISSUES - len(issues)))
        total = len(errors) + len(crossed) + sum(1 for _ in checks)
        raise ConfigError(source, issues + crossed, total=total) from None
    config._source = base
    checks = _cross_checks(_Parts.from_config(config), _Hints(MAX_ISSUES))
    issues = list(islice(checks, MAX_ISSUES))
    if issues:
        raise ConfigError(source, issues, total=len(issues) + sum(1 for _ in checks))
    return config


_GOAL: TypeAdapter[Any] = TypeAdapter(GoalConfig)


def goal_from_dict(data: Any, source: str = "goal") -> TradeVolumeGoal | ProfitTargetGoal | StrategyPerformanceGoal:
    """Validate one goal, as in a config's ``goals`` (for goals added to a running cluster).
    A :class:`ConfigError` names the fields as paths inside the goal (``target.trades``)."""
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", "a goal is a mapping with name, type, target and assign, as in a config's goals")])
    try:
        return _GOAL.validate_python(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        errors = exc.errors()
        issues = []
        for err in errors[:MAX_ISSUES]:
            issue = _issue({**err, "loc": ("goals", 0, *err["loc"])})
            issues.append(ConfigIssue(issue.path.removeprefix("goals[0]").lstrip("."), issue.message))
        raise ConfigError(source, issues, total=len(errors)) from None


def _counts(data: dict[Any, Any]) -> Iterable[ConfigIssue]:
    """Too many farms, agents, goals or assignments, counted on the raw data (an alias
    repeated counts each time: each copy would be validated and run)."""

    def items(container: Any, key: str) -> list[Any]:
        value = container.get(key) if isinstance(container, dict) else None
        return value if isinstance(value, list) else []

    farms = items(data, "farms")
    if len(farms) > MAX_FARMS:
        yield ConfigIssue("farms", f"{len(farms):,} farms; a cluster may have at most {MAX_FARMS:,}: split it into several")
    else:
        agents = sum(len(items(farm, "agents")) for farm in farms)
        if agents > MAX_AGENTS:
            yield ConfigIssue(
                "farms", f"{agents:,} agents in all; a cluster may have at most {MAX_AGENTS:,}: split it into several"
            )
    goals = items(data, "goals")
    if len(goals) > MAX_GOALS:
        yield ConfigIssue("goals", f"{len(goals):,} goals; a cluster may have at most {MAX_GOALS:,}")
    else:
        assignments = sum(len(items(goal, "assign")) for goal in goals)
        if assignments > MAX_ASSIGNMENTS:
            yield ConfigIssue(
                "goals", f"{assignments:,} goal assignments in all; a cluster may have at most {MAX_ASSIGNMENTS:,}"
            )


# -- checks across fields ---------------------------------------------------------------


class _Hints:
    """"Did you mean" suggestions for the first ``budget`` unknown names only: each scans
    every known name, and only the first problems are shown."""

    def __init__(self, budget: int) -> None:
        self.left = budget

    def unknown(self, what: str, name: str, known: Sequence[str]) -> str:
        """``no farm named 'x'`` with a suggestion (or, lacking one, some known names)."""
        hint: list[str] = []
        if self.left > 0:
            self.left -= 1
            hint = difflib.get_close_matches(name, known, n=1)
        return f"no {what} named {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else f"; {what}s: {_listing(known)}")


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names):,} in all)"


def _duplicates(names: Iterable[tuple[str, str]], what: str) -> Iterable[ConfigIssue]:
    first: dict[str, str] = {}
    for path, name in names:
        if name in first:
            yield ConfigIssue(path, f"duplicate {what} name {name!r} (also at {first[name]}); names must be unique")
        else:
            first[name] = path


def weight_issues(
    path: str, policy: Any, children: Sequence[str | None], what: str, hints: _Hints | None = None
) -> Iterable[ConfigIssue]:
    """What is wrong with allocation ``policy`` at ``path`` over ``children`` (``what``s:
    farms or agents): weights naming no child, shares that cannot add up. A child named
    None is one whose name is not known (it did not parse): weights are then not checked
    for naming no child, since they may name that one."""
    hints = hints or _Hints(MAX_ISSUES)
    names = [c for c in children if c is not None]
    if isinstance(policy, _LimitedPolicy) and children and policy.min_share * len(children) > 1:
        yield ConfigIssue(
            f"{path}.min_share",
            f"{policy.min_share} for each of {len(children)} {what}s is more than the whole amount; "
            f"use at most {Decimal(1) / len(children):.4f}",
        )
    if not isinstance(policy, FixedPolicy):
        return
    if names and len(names) == len(children):
        known = set(names)
        for name in policy.weights:
            if name not in known:
                yield ConfigIssue(f"{path}.weights.{name}", hints.unknown(what, name, names))
    for name in names:
        if name not in policy.weights:
            yield ConfigIssue(f"{path}.weights", f"no weight for {what} {name!r}; give every {what} a weight")


# The parts of a config that the checks across fields read. A valid config gives all of
# them; an invalid one gives those that parse on their own (None where one does not), so
# that its field errors and its cross-reference errors are reported together.


@dataclass(frozen=True, slots=True)
class _AgentPart:
    path: str
    name: str | None
    """None: the name did not parse."""
    symbol: str | None
    """None: none given (or it did not parse)."""


@dataclass(frozen=True, slots=True)
class _FarmPart:
    path: str
    name: str | None
    allocation: Any
    """The allocation policy; None: it did not parse."""
    rebalance: RebalanceConfig | None
    agents: list[_AgentPart] | None
    """None: the list of agents did not parse."""


@dataclass(frozen=True, slots=True)
class _GoalPart:
    path: str
    name: str | None
    assign: list[tuple[str, Assignment]]
    """The assignments that parsed, with their paths."""


def _valid(adapter: TypeAdapter[Any], value: Any) -> Any:
    """``value`` validated on its own by ``adapter``; None when it does not parse."""
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


def _parsed(adapter: TypeAdapter[Any], raw: Any, key: str, default: Any = None) -> Any:
    """``raw[key]`` validated on its own by ``adapter``; ``default`` when the key is absent,
    None when ``raw`` is not a mapping or the value does not parse."""
    if not isinstance(raw, dict):
        return None
    return _valid(adapter, raw[key]) if key in raw else default


_NAME = TypeAdapter(Name)
_SYMBOL = TypeAdapter(Symbol | None)
_POLICY: TypeAdapter[Any] = TypeAdapter(AllocationPolicy)
_REBALANCE = TypeAdapter(RebalanceConfig)
_CHECKPOINT = TypeAdapter(CheckpointConfig)
_DATA: TypeAdapter[Any] = TypeAdapter(DataConfig)
_ASSIGNMENT = TypeAdapter(Assignment)


@dataclass(frozen=True, slots=True)
class _Parts:
    farms: list[_FarmPart] | None
    """None: the list of farms did not parse."""
    master_allocation: Any
    master_rebalance: RebalanceConfig | None
    goals: list[_GoalPart]
    checkpoint: CheckpointConfig | None
    data: FileData | SyntheticData | None
    base: Path | None
    """The config file (relative data paths are read from its folder)."""

    @classmethod
    def from_config(cls, config: ClusterConfig) -> _Parts:
        return cls(
            farms=[
                _FarmPart(
                    f"farms[{i}]", farm.name, farm.allocation, farm.rebalance,
                    [_AgentPart(f"farms[{i}].agents[{j}]", a.name, a.symbol) for j, a in enumerate(farm.agents)],
                )
                for i, farm in enumerate(config.farms)
            ],
            master_allocation=config.master.allocation,
            master_rebalance=config.master.rebalance,
            goals=[
                _GoalPart(f"goals[{i}]", goal.name, [(f"goals[{i}].assign[{j}]", a) for j, a in enumerate(goal.assign)])
                for i, goal in enumerate(config.goals)
            ],
            checkpoint=config.checkpoint,
            data=config.data,
            base=config.source,
        )

    @classmethod
    def from_raw(cls, data: dict[Any, Any], base: Path | None) -> _Parts:
        """The parts of config data that failed validation, each validated on its own."""

        def agents(path: str, raw: Any) -> list[_AgentPart] | None:
            if not isinstance(raw, list):
                return None
            return [
                _AgentPart(f"{path}[{j}]", _parsed(_NAME, agent, "name"), _parsed(_SYMBOL, agent, "symbol"))
                for j, agent in enumerate(raw)
            ]

        def assignments(path: str, raw: Any) -> list[tuple[str, Assignment]]:
            items = raw if isinstance(raw, list) else []
            parsed = ((f"{path}[{j}]", _valid(_ASSIGNMENT, item)) for j, item in enumerate(items))
            return [(where, a) for where, a in parsed if a is not None]

        raw_farms = data.get("farms")
        farms = None
        if isinstance(raw_farms, list):
            farms = [
                _FarmPart(
                    f"farms[{i}]",
                    _parsed(_NAME, farm, "name"),
                    _parsed(_POLICY, farm, "allocation", EqualPolicy(policy="equal")),
                    _parsed(_REBALANCE, farm, "rebalance", RebalanceConfig()),
                    agents(f"farms[{i}].agents", farm.get("agents")) if isinstance(farm, dict) else None,
                )
                for i, farm in enumerate(raw_farms)
            ]
        master = data.get("master")
        raw_goals = data.get("goals")
        return cls(
            farms=farms,
            master_allocation=_parsed(_POLICY, master, "allocation", EqualPolicy(policy="equal")),
            master_rebalance=_parsed(_REBALANCE, master, "rebalance", RebalanceConfig()),
            goals=[
                _GoalPart(f"goals[{i}]", _parsed(_NAME, goal, "name"), assignments(f"goals[{i}].assign", goal.get("assign")))
                for i, goal in enumerate(raw_goals if isinstance(raw_goals, list) else [])
                if isinstance(goal, dict)
            ],
            checkpoint=_parsed(_CHECKPOINT, data, "checkpoint", CheckpointConfig()),
            data=_parsed(_DATA, data, "data"),
            base=base,
        )

    def farm_names(self) -> list[str | None]:
        return [f.name for f in self.farms or []]

    def agent_list(self) -> list[_AgentPart]:
        return [a for f in self.farms or [] for a in f.agents or []]

    def all_farm_names_known(self) -> bool:
        """Every farm's name parsed (so a name that is none of them names no farm)."""
        return bool(self.farms) and all(f.name is not None for f in self.farms or [])

    def all_agent_names_known(self) -> bool:
        agents = self.agent_list()
        return (
            self.farms is not None
            and all(f.agents is not None for f in self.farms)
            and bool(agents)
            and all(a.name is not None for a in agents)
        )


def _cross_checks(parts: _Parts, hints: _Hints) -> Iterable[ConfigIssue]:
    """What is wrong across fields: duplicate names, names that refer to nothing, numbers
    that must agree. Each check reads only parts that parsed."""
    farm_names = parts.farm_names()
    agents = parts.agent_list()
    agent_names = [a.name for a in agents]
    yield from _duplicates(((f"{f.path}.name", f.name) for f in parts.farms or [] if f.name is not None), "farm")
    yield from _duplicates(((f"{a.path}.name", a.name) for a in agents if a.name is not None), "agent")
    yield from _duplicates(((f"{g.path}.name", g.name) for g in parts.goals if g.name is not None), "goal")

    if parts.master_allocation is not None and parts.farms is not None:
        yield from weight_issues("master.allocation", parts.master_allocation, farm_names, "farm", hints)
    for farm in parts.farms or []:
        if farm.allocation is not None and farm.agents is not None:
            names = [a.name for a in farm.agents]
            yield from weight_issues(f"{farm.path}.allocation", farm.allocation, names, "agent", hints)

    # A name that is none of the known ones names nothing only if every name is known.
    farms_known = [n for n in farm_names if n is not None] if parts.all_farm_names_known() else None
    agents_known = [n for n in agent_names if n is not None] if parts.all_agent_names_known() else None
    farm_set, agent_set = set(farms_known or ()), set(agents_known or ())
    for goal in parts.goals:
        for path, assignment in goal.assign:
            if assignment.farm is not None and farms_known is not None and assignment.farm not in farm_set:
                yield ConfigIssue(f"{path}.farm", hints.unknown("farm", assignment.farm, farms_known))
            if assignment.agent is not None and agents_known is not None and assignment.agent not in agent_set:
                yield ConfigIssue(f"{path}.agent", hints.unknown("agent", assignment.agent, agents_known))

    if parts.checkpoint is not None:
        every = parts.checkpoint.every_bars
        rebalanced = [(f"{f.path}.rebalance.every_bars", f.rebalance) for f in parts.farms or []]
        rebalanced.append(("master.rebalance.every_bars", parts.master_rebalance))
        for path, rebalance in rebalanced:
            n = rebalance.every_bars if rebalance is not None else None
            if n is not None and n % every != 0:
                yield ConfigIssue(
                    path, f"{n} is not a multiple of checkpoint.every_bars ({every}); rebalancing happens at checkpoints"
                )
    if parts.master_rebalance is not None and parts.master_rebalance.liquidate:
        yield ConfigIssue(
            "master.rebalance.liquidate",
            "selling positions to rebalance across farms is not available yet; use it on farms, or leave it false",
        )

    if parts.data is not None:
        yield from symbol_issues(((a.path, a.symbol) for a in agents), *data_symbol(parts.data))

    if isinstance(parts.data, FileData):
        data_path = resolve_data_path(parts.data.path, parts.base)
        if not data_path.is_file():
            yield ConfigIssue("data.path", f"file not found: {data_path} (a relative path is read from the config's folder)")


# -- turning pydantic errors into paths and sentences ------------------------------------


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _members(tp: Any) -> list[Any]:
    tp = _unwrap(tp)
    if get_origin(tp) in (Union, UnionType):
        return [_unwrap(t) for t in get_args(tp)]
    return [tp]


def _tag_member(tp: Any, element: Any) -> Any:
    """If ``element`` is the tag of one member of a discriminated union ``tp``, that member."""
    members = [m for m in _members(tp) if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(members) < 2 or not isinstance(element, str):
        return None
    for member in members:
        for field in member.model_fields.values():
            if get_origin(field.annotation) is Literal and element in get_args(field.annotation):
                return member
    return None


def _walk(loc: tuple[Any, ...]) -> tuple[str, Any]:
    """Render a pydantic error location as ``a.b[0].c``, dropping union tags; also return the
    model class that holds the last element (for suggesting field names), if known."""
    tp: Any = ClusterConfig
    holder: Any = None
    path = ""
    for element in loc:
        if element == "[key]":  # pydantic's marker for an invalid mapping key: the key is already in the path
            continue
        member = _tag_member(tp, element)
        if member is not None:
            tp = member
            continue
        candidates = [m for m in _members(tp) if m is not type(None)]
        tp = candidates[0] if len(candidates) == 1 else None
        origin = get_origin(tp)
        if isinstance(element, int) and origin in (list, tuple):
            path += f"[{element}]"
            tp = get_args(tp)[0] if get_args(tp) else None
            holder = None
            continue
        path += f".{_key(element)}" if path else _key(element)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            holder = tp
            field = tp.model_fields.get(element)
            tp = field.annotation if field is not None else None
        elif origin is dict:
            holder = None
            tp = get_args(tp)[1]
        else:
            holder = None
            tp = None
    return path, holder


_SHOWN = reprlib.Repr()
# A value in a message is a glimpse: a few items of a few levels, never the whole of a
# value that aliases may have made enormous.
_SHOWN.maxlevel = 2
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxset = _SHOWN.maxfrozenset = _SHOWN.maxdeque = 4
_SHOWN.maxdict = 3
_SHOWN.maxstring = 20
_SHOWN.maxother = 30
_SHOWN.maxlong = 30


def _shown(value: Any) -> str:
    """A bounded repr for messages (reprlib: a few items, a few levels, short strings)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"a number of about {int(value.bit_length() * 0.30103):,} digits"  # repr would refuse beyond 4,300
    text = _SHOWN.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key(element: Any) -> str:
    text = str(element)
    return text if len(text) <= 40 else text[:37] + "..."


def _issue(err: Any) -> ConfigIssue:
    loc = tuple(err.get("loc", ()))
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    value = err.get("input")
    path, holder = _walk(loc)
    # A URL may hold a secret: never echo what was given there.
    got = "" if path.endswith(".url") else f" (got {_shown(value)})"
    if kind == "extra_forbidden":
        known = list(holder.model_fields) if holder is not None else []
        hint = difflib.get_close_matches(_key(loc[-1]), known, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else (f"; allowed: {', '.join(known)}" if known else "")
        return ConfigIssue(path, f"unknown field{suggestion}")
    if kind == "missing":
        return ConfigIssue(path, "required field is missing")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "?")
        return ConfigIssue(path, f"must be {op} {bound}{got}")
    if kind == "literal_error":
        return ConfigIssue(path, f"must be one of {ctx.get('expected', '?')}{got}")
    if kind == "union_tag_invalid":
        field = str(ctx.get("discriminator", "")).strip("'")
        return ConfigIssue(
            f"{path}.{field}" if path else field,
            f"unknown {field} {_shown(ctx.get('tag'))}; expected one of {ctx.get('expected_tags')}",
        )
    if kind == "union_tag_not_found":
        field = str(ctx.get("discriminator", "")).strip("'")
        return ConfigIssue(f"{path}.{field}" if path else field, "required field is missing")
    if kind == "string_pattern_mismatch":
        rule = NAME_RULE if ctx.get("pattern") == NAME_PATTERN else f"must match {ctx.get('pattern')}"
        return ConfigIssue(path, f"{rule}{got}")
    if kind in ("too_short", "too_long"):
        return ConfigIssue(path, f"{err.get('msg', '').lower()}")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return ConfigIssue(path, f"must be a mapping of fields{got}")
    if kind in ("list_type", "tuple_type"):
        return ConfigIssue(path, f"must be a list{got}")
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return ConfigIssue(path, f"must be a whole number{got}")
    if kind in ("decimal_parsing", "decimal_type", "float_parsing", "float_type"):
        return ConfigIssue(path, f"must be a number{got}")
    if kind == "finite_number":
        return ConfigIssue(path, f"must be a number, finite and of reasonable size{got}")
    if kind in ("string_type",):
        return ConfigIssue(path, f"must be text{got}")
    message = str(err.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return ConfigIssue(path, message[:1].lower() + message[1:] + ("" if kind == "value_error" else got))


__all__ = [
    "AGENT_MODELS",
    "AgentRiskConfig",
    "Assignment",
    "CheckpointConfig",
    "ClusterConfig",
    "ConfigError",
    "ConfigIssue",
    "CostsConfig",
    "Deadline",
    "EqualPolicy",
    "FarmConfig",
    "FarmRuntime",
    "FileData",
    "FixedPolicy",
    "InverseVolatilityPolicy",
    "PerformancePolicy",
    "RebalanceConfig",
    "MasterConfig",
    "RiskConfig",
    "SizingConfig",
    "StorageConfig",
    "StreamsConfig",
    "SyntheticData",
    "bundled_data",
    "config_from_dict",
    "data_symbol",
    "load_config",
    "parse_yaml",
    "resolve_data_path",
    "symbol_issues",
]

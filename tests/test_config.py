"""Cluster config: the demo file, every kind of broken config, YAML-level errors,
exact amounts, relative data paths, frozen models that forbid unknown keys."""

from __future__ import annotations

import copy
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from cival.config import (
    ClusterConfig,
    ConfigError,
    ConfigIssue,
    config_from_dict,
    load_config,
    parse_yaml,
)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"
DEMO_FILE_TEXT = DEMO.read_text(encoding="utf-8")
FILE_DATA = "data:\n  source: file\n  path: cival:data/BTCUSDT-1h.csv.gz\n  symbol: BTCUSDT\n"
SYNTHETIC_DATA = "data:\n  source: synthetic\n  symbol: SYN-USD\n  bars: 5000\n  seed: 42\n  timeframe: 1h\n"
# The validation tests below mutate the demo config without its bundled data file beside
# it, so they use the demo with synthetic data.
DEMO_TEXT = DEMO_FILE_TEXT.replace(FILE_DATA, SYNTHETIC_DATA)
assert DEMO_TEXT != DEMO_FILE_TEXT


@pytest.fixture
def demo_dict() -> dict[str, Any]:
    """A fresh deep copy of the demo config's parsed YAML, safe to mutate."""
    return copy.deepcopy(parse_yaml(DEMO_TEXT, str(DEMO)))


def issues_of(data: Any) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, source="test.yaml")
    assert info.value.source == "test.yaml"
    assert info.value.issues, "a ConfigError must list at least one issue"
    return info.value.issues


def find_issue(issues: list[ConfigIssue], path: str, fragment: str) -> ConfigIssue:
    matches = [i for i in issues if i.path == path and fragment in i.message]
    assert matches, f"no issue at {path!r} containing {fragment!r}; got {[str(i) for i in issues]}"
    return matches[0]


# -- the demo config ------------------------------------------------------------------------


def test_demo_config_loads_with_expected_shape():
    config = load_config(DEMO)

    assert isinstance(config, ClusterConfig)
    assert config.name == "demo"
    assert config.source == DEMO.resolve()
    assert [(f.name, f.type) for f in config.farms] == [
        ("trend", "trend_following"),
        ("breakout", "breakout"),
        ("price-action", "price_action"),
    ]
    assert [[a.strategy for a in f.agents] for f in config.farms] == [["alligator"], ["darvas"], ["elliott"]]
    assert [a.name for _, a in config.agents()] == ["gator-13-8-5", "darvas-20-3", "elliott-5pct"]

    # One goal per farm, each goal assigned to a different farm.
    assert len(config.goals) == len(config.farms) == 3
    assigned = []
    for goal in config.goals:
        assert len(goal.assign) == 1
        assert goal.assign[0].agent is None
        assigned.append(goal.assign[0].farm)
    assert sorted(assigned) == sorted(f.name for f in config.farms)

    deposit = config.master.initial_deposit
    assert type(deposit) is Decimal
    assert deposit == Decimal("100000.00")
    assert deposit.as_tuple() == Decimal("100000.00").as_tuple()

    # The weights were YAML floats; they must arrive as the decimals that were written.
    assert config.master.allocation.policy == "fixed"
    assert config.master.allocation.weights == {
        "trend": Decimal("0.4"),
        "breakout": Decimal("0.3"),
        "price-action": Decimal("0.3"),
    }
    assert config.master.allocation.reserve_pct == Decimal(10)

    # Empty storage/streams sections mean the embedded defaults.
    assert config.storage.url is None
    assert config.streams.url is None
    # The demo trades the bars shipped with Cival, named as such (in a checkout: configs/data).
    assert config.data.source == "file"
    assert config.data_path() == DEMO.parent.resolve() / "data" / "BTCUSDT-1h.csv.gz"
    assert config.data_path().is_file()
    assert config_from_dict(parse_yaml(DEMO_TEXT, "x")).data.source == "synthetic"


def test_demo_agent_params_are_parsed_into_their_strategy_models():
    config = load_config(DEMO)
    gator, darvas, elliott = (a for _, a in config.agents())
    assert (gator.params.jaw_period, gator.params.teeth_shift, gator.params.lips_shift) == (13, 5, 3)
    assert (darvas.params.lookback, darvas.params.confirm) == (20, 3)
    assert elliott.params.min_retrace == pytest.approx(0.382)
    assert elliott.params.max_retrace == pytest.approx(0.786)
    assert gator.sizing.fraction == Decimal(1)


# -- one broken thing at a time -----------------------------------------------------------


def _rename(container_path: tuple, old: str, new: str):
    def mutate(d):
        obj = d
        for key in container_path:
            obj = obj[key]
        obj[new] = obj.pop(old)

    return mutate


def _set(path: tuple, value: Any):
    def mutate(d):
        obj = d
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value

    return mutate


def _delete(path: tuple):
    def mutate(d):
        obj = d
        for key in path[:-1]:
            obj = obj[key]
        del obj[path[-1]]

    return mutate


GATOR = ("farms", 0, "agents", 0)
ELLIOTT = ("farms", 2, "agents", 0)

BROKEN = [
    # (id, mutation, expected path, message fragment)
    ("top-level-typo", _rename((), "risk", "rsik"), "rsik", "did you mean 'risk'"),
    ("nested-typo", _rename(("farms", 0), "agents", "agnets"), "farms[0].agnets", "did you mean 'agents'"),
    ("nested-typo-leaves-agents-missing", _rename(("farms", 0), "agents", "agnets"), "farms[0].agents", "required"),
    ("negative-deposit", _set(("master", "initial_deposit"), "-5.00"), "master.initial_deposit", "must be > 0"),
    ("zero-deposit", _set(("master", "initial_deposit"), 0), "master.initial_deposit", "must be > 0"),
    ("boolean-deposit", _set(("master", "initial_deposit"), True), "master.initial_deposit", "must be a number, not true"),
    ("text-deposit", _set(("master", "initial_deposit"), "lots"), "master.initial_deposit", "must be a number"),
    ("deposit-9-places", _set(("master", "initial_deposit"), "1.123456789"), "master.initial_deposit",
     "more than 8 decimal places"),
    ("zero-jaw-period", _set(GATOR + ("params", "jaw_period"), 0), "farms[0].agents[0].params.jaw_period",
     "must be > 0"),
    ("fractional-jaw-period", _set(GATOR + ("params", "jaw_period"), 13.5), "farms[0].agents[0].params.jaw_period",
     "whole number"),
    ("param-of-other-strategy", _set(GATOR + ("params", "lookback"), 20), "farms[0].agents[0].params.lookback",
     "unknown field"),
    ("unknown-strategy", _set(ELLIOTT + ("strategy",), "ichimoku"), "farms[2].agents[0].strategy",
     "unknown strategy 'ichimoku'"),
    ("missing-strategy", _delete(GATOR + ("strategy",)), "farms[0].agents[0].strategy", "required"),
    ("farm-type-not-in-literal", _set(("farms", 0, "type"), "scalping"), "farms[0].type", "must be one of"),
    ("elliott-min-above-max-retrace", _set(ELLIOTT + ("params", "min_retrace"), 0.9), "farms[2].agents[0].params",
     "must not exceed max_retrace"),
    ("sizing-fraction-zero", _set(GATOR + ("sizing", "fraction"), 0), "farms[0].agents[0].sizing.fraction",
     "must be > 0"),
    ("sizing-fraction-above-one", _set(GATOR + ("sizing", "fraction"), 1.5), "farms[0].agents[0].sizing.fraction",
     "must be <= 1"),
    ("master-reserve-100", _set(("master", "allocation", "reserve_pct"), 100), "master.allocation.reserve_pct",
     "must be < 100"),
    ("farm-reserve-100", _set(("farms", 1, "allocation", "reserve_pct"), 100), "farms[1].allocation.reserve_pct",
     "must be < 100"),
    ("unknown-policy", _set(("master", "allocation", "policy"), "random"), "master.allocation.policy",
     "unknown policy 'random'"),
    ("weight-for-unknown-farm", _set(("master", "allocation", "weights", "zzzzzz"), 0.1),
     "master.allocation.weights.zzzzzz", "no farm named 'zzzzzz'"),
    ("weight-for-misspelled-farm", _set(("master", "allocation", "weights", "trnd"), 0.1),
     "master.allocation.weights.trnd", "did you mean 'trend'"),
    ("weight-missing-for-a-farm", _delete(("master", "allocation", "weights", "breakout")),
     "master.allocation.weights", "no weight for farm 'breakout'"),
    ("duplicate-farm-name", _set(("farms", 1, "name"), "trend"), "farms[1].name", "duplicate farm name 'trend'"),
    ("duplicate-agent-across-farms", _set(("farms", 1, "agents", 0, "name"), "gator-13-8-5"),
     "farms[1].agents[0].name", "duplicate agent name 'gator-13-8-5'"),
    ("duplicate-goal-name", _set(("goals", 1, "name"), "trend-profit"), "goals[1].name", "duplicate goal name"),
    ("goal-for-unknown-farm", _set(("goals", 0, "assign", 0, "farm"), "trnd"), "goals[0].assign[0].farm",
     "did you mean 'trend'"),
    ("goal-for-unknown-agent", _set(("goals", 0, "assign", 0), {"agent": "gator-13-8-6"}),
     "goals[0].assign[0].agent", "did you mean 'gator-13-8-5'"),
    ("assignment-to-farm-and-agent", _set(("goals", 0, "assign", 0, "agent"), "gator-13-8-5"),
     "goals[0].assign[0]", "exactly one of 'farm' or 'agent'"),
    ("assignment-to-nothing", _set(("goals", 0, "assign", 0), {}), "goals[0].assign[0]",
     "exactly one of 'farm' or 'agent'"),
    ("deadline-with-neither", _set(("goals", 2, "deadline"), {}), "goals[2].deadline",
     "exactly one of 'bars' or 'time'"),
    ("deadline-with-both", _set(("goals", 2, "deadline"), {"bars": 10, "time": "2025-06-30T00:00:00Z"}),
     "goals[2].deadline", "exactly one of 'bars' or 'time'"),
    ("deadline-without-time-zone", _set(("goals", 2, "deadline"), {"time": "2025-06-30T00:00:00"}),
     "goals[2].deadline", "time zone"),
    ("performance-without-criterion", _set(("goals", 2, "target"), {"min_trades": 10}), "goals[2].target",
     "min_sharpe, min_win_rate"),
    ("unknown-goal-type", _set(("goals", 0, "type"), "get_rich"), "goals[0].type", "unknown type 'get_rich'"),
    ("target-of-other-goal-type", _set(("goals", 0, "target"), {"trades": 5}), "goals[0].target.trades",
     "unknown field"),
    ("storage-url-with-password", _set(("storage", "url"), "postgresql://cival:hunter2secret@db:5432/cival"),
     "storage.url", "DATABASE_URL"),
    ("storage-url-wrong-scheme", _set(("storage", "url"), "mysql://db/cival"), "storage.url", "postgresql://"),
    ("streams-url-wrong-scheme", _set(("streams", "url"), "http://localhost:6379"), "streams.url", "redis://"),
    ("streams-url-with-password", _set(("streams", "url"), "redis://:hunter2secret@cache:6379/0"), "streams.url",
     "REDIS_URL"),
    ("data-file-missing", _set(("data",), {"source": "file", "path": "no/such/bars.csv"}), "data.path",
     "file not found"),
    ("unknown-data-source", _set(("data", "source"), "kafka"), "data.source", "unknown source 'kafka'"),
    ("max-move-of-one", _set(("data", "max_move"), 1), "data.max_move", "must be > 1"),
    ("max-move-text", _set(("data", "max_move"), "off"), "data.max_move", "must be a number"),
    ("bad-farm-name", _set(("farms", 0, "name"), "-trend"), "farms[0].name", "must start with a letter or digit"),
    ("no-agents", _set(("farms", 0, "agents"), []), "farms[0].agents", "at least 1 item"),
    ("missing-master", _delete(("master",)), "master", "required field is missing"),
    ("unsupported-version", _set(("version",), 2), "version", "must be one of 1"),
]


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [pytest.param(m, p, f, id=i) for i, m, p, f in BROKEN],
)
def test_broken_config_reports_path_and_reason(demo_dict, mutate, path, fragment):
    mutate(demo_dict)
    find_issue(issues_of(demo_dict), path, fragment)


@pytest.mark.parametrize(
    ("section", "url"),
    [
        ("storage", "postgresql://cival:hunter2secret@db:5432/cival"),
        ("storage", "postgres://:hunter2secret@db/cival"),
        ("streams", "rediss://user:hunter2secret@cache:6380/0"),
    ],
)
def test_url_with_password_is_refused_without_echoing_the_secret(demo_dict, section, url):
    demo_dict[section]["url"] = url
    with pytest.raises(ConfigError) as info:
        config_from_dict(demo_dict, source="test.yaml")
    issue = find_issue(info.value.issues, f"{section}.url", "password")
    assert "hunter2secret" not in issue.message
    assert "hunter2secret" not in str(info.value)


def test_urls_without_password_are_accepted(demo_dict):
    demo_dict["storage"]["url"] = "postgresql://cival@db:5432/cival"
    demo_dict["streams"]["url"] = "redis://cache:6379/0"
    config = config_from_dict(demo_dict)
    assert config.storage.url == "postgresql://cival@db:5432/cival"
    assert config.streams.url == "redis://cache:6379/0"


def test_misspelled_top_level_key_suggests_the_right_one(demo_dict):
    demo_dict["strage"] = demo_dict.pop("storage")
    issues = issues_of(demo_dict)
    # storage has a default, so the typo is the only problem.
    assert [(i.path, i.message) for i in issues] == [("strage", "unknown field; did you mean 'storage'?")]


# -- several problems at once ---------------------------------------------------------------


def test_all_structural_errors_are_reported_together(demo_dict):
    demo_dict["sorage"] = demo_dict.pop("storage")
    demo_dict["master"]["initial_deposit"] = "-1"
    demo_dict["farms"][2]["agents"][0]["params"]["zigzag_pct"] = 0
    issues = issues_of(demo_dict)
    assert len(issues) == 3, [str(i) for i in issues]
    assert {i.path for i in issues} == {"sorage", "master.initial_deposit", "farms[2].agents[0].params.zigzag_pct"}
    find_issue(issues, "sorage", "did you mean 'storage'")
    find_issue(issues, "master.initial_deposit", "must be > 0")
    find_issue(issues, "farms[2].agents[0].params.zigzag_pct", "must be > 0")


def test_all_cross_field_errors_are_reported_together(demo_dict):
    demo_dict["farms"][2]["agents"][0]["name"] = "darvas-20-3"
    demo_dict["goals"][1]["assign"][0]["farm"] = "brekaout"
    del demo_dict["master"]["allocation"]["weights"]["trend"]
    issues = issues_of(demo_dict)
    assert len(issues) == 3, [str(i) for i in issues]
    find_issue(issues, "farms[2].agents[0].name", "duplicate agent name 'darvas-20-3' (also at farms[1].agents[0].name)")
    find_issue(issues, "goals[1].assign[0].farm", "did you mean 'breakout'")
    find_issue(issues, "master.allocation.weights", "no weight for farm 'trend'")


def test_error_text_lists_every_issue_with_its_path(demo_dict):
    demo_dict["master"]["initial_deposit"] = 0
    demo_dict["farms"][0]["type"] = "scalping"
    with pytest.raises(ConfigError) as info:
        config_from_dict(demo_dict, source="cluster.yaml")
    text = str(info.value)
    assert text.startswith("cluster.yaml: 2 errors\n")
    for issue in info.value.issues:
        assert f"  {issue.path}: {issue.message}" in text.splitlines()


# -- YAML-level problems --------------------------------------------------------------------


def _load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert str(err).startswith(str(path)), str(err)
    assert err.source == str(path)
    assert len(err.issues) == 1
    return err


def test_duplicate_yaml_key_is_an_error_with_line_numbers(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        "version: 1\n"
        "name: dup\n"
        "master:\n"
        "  initial_deposit: 100\n"
        "  initial_deposit: 200\n",
        encoding="utf-8",
    )
    message = _load_error(path).issues[0].message
    assert "duplicate key 'initial_deposit'" in message
    assert "line 5" in message  # the second occurrence
    assert "first at line 4" in message


def test_duplicate_key_in_the_demo_text_is_caught_not_overwritten(tmp_path):
    path = tmp_path / "dup-demo.yaml"
    path.write_text(DEMO_TEXT.replace("name: demo\n", "name: demo\nname: other\n", 1), encoding="utf-8")
    message = _load_error(path).issues[0].message
    assert "duplicate key 'name'" in message


def test_yaml_syntax_error_reports_the_line(tmp_path):
    path = tmp_path / "syntax.yaml"
    path.write_text("version: 1\nname: [unclosed\nmaster: {}\n", encoding="utf-8")
    message = _load_error(path).issues[0].message
    assert "YAML error" in message
    assert "line 3" in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "empty"), ("# nothing but a comment\n", "empty"), ("- a\n- b\n", "a list"), ("just text\n", "a str")],
    ids=["empty", "comment-only", "list", "scalar"],
)
def test_file_that_is_not_a_mapping(tmp_path, text, fragment):
    path = tmp_path / "notmap.yaml"
    path.write_text(text, encoding="utf-8")
    message = _load_error(path).issues[0].message
    assert fragment in message
    assert "expected a mapping" in message


def test_missing_file(tmp_path):
    message = _load_error(tmp_path / "missing.yaml").issues[0].message
    assert "not found" in message


def test_directory_instead_of_file(tmp_path):
    folder = tmp_path / "configs.yaml"
    folder.mkdir()
    message = _load_error(folder).issues[0].message
    assert "folder" in message


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    message = _load_error(path).issues[0].message
    assert "cannot read" in message


def test_python_tags_are_refused_not_executed(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.getcwd []\n", encoding="utf-8")
    message = _load_error(path).issues[0].message
    assert "YAML error" in message


# -- exact amounts --------------------------------------------------------------------------


def test_yaml_float_amount_is_the_decimal_that_was_written(tmp_path):
    path = tmp_path / "float.yaml"
    text = DEMO_TEXT.replace('initial_deposit: "100000.00"', "initial_deposit: 100000.10")
    assert text != DEMO_TEXT
    path.write_text(text, encoding="utf-8")
    deposit = load_config(path).master.initial_deposit
    assert type(deposit) is Decimal
    assert deposit == Decimal("100000.1")
    assert deposit != Decimal(100000.10)  # the binary float is 100000.100000000005820766...
    assert deposit.as_tuple().exponent >= -8


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.1, "0.1"), (12.34, "12.34"), (1e-8, "1E-8"), (250, "250"), ("0.00000001", "0.00000001")],
)
def test_amounts_keep_their_written_value(demo_dict, value, expected):
    demo_dict["master"]["initial_deposit"] = value
    assert config_from_dict(demo_dict).master.initial_deposit == Decimal(expected)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "NaN", "Infinity"])
def test_non_finite_amounts_are_refused(demo_dict, value):
    demo_dict["master"]["initial_deposit"] = value
    issues = issues_of(demo_dict)
    assert [i.path for i in issues] == ["master.initial_deposit"]


# -- relative data paths --------------------------------------------------------------------


BEYOND = "beyond what the books hold"
PLACES = "more than 8 decimal places"
QUANTUM = "a quantity step must be at least 1e-8 and a whole multiple of it"
GOAL_PROFIT = ("goals", 0, "target", "profit")
GOAL_VOLUME = ("goals", 1, "target", "min_profit_per_trade")

AMOUNTS = [
    # (id, where, value, expected path, fragment); YAML numbers arrive as floats, strings as text
    ("deposit-1e20-float", ("master", "initial_deposit"), 1e20, "master.initial_deposit", BEYOND),
    ("deposit-1e20-text", ("master", "initial_deposit"), "1e20", "master.initial_deposit", BEYOND),
    ("deposit-at-capacity", ("master", "initial_deposit"), "1000000000000000", "master.initial_deposit", BEYOND),
    ("deposit-huge-exponent", ("master", "initial_deposit"), "1e999999", "master.initial_deposit", "must be a number"),
    ("deposit-9-places", ("master", "initial_deposit"), "0.000000001", "master.initial_deposit", PLACES),
    ("profit-1e20", GOAL_PROFIT, "1e20", "goals[0].target.profit", BEYOND),
    ("profit-9-places", GOAL_PROFIT, "500.123456789", "goals[0].target.profit", PLACES),
    ("min-profit-1e16", GOAL_VOLUME, 1e16, "goals[1].target.min_profit_per_trade", BEYOND),
    ("min-profit-9-places", GOAL_VOLUME, "5.000000001", "goals[1].target.min_profit_per_trade", PLACES),
    ("start-price-1e20", ("data", "start_price"), 1e20, "data.start_price", BEYOND),
    ("start-price-9-places", ("data", "start_price"), "100.000000001", "data.start_price", PLACES),
    ("qty-step-1e-30", GATOR + ("sizing", "qty_step"), 1e-30, "farms[0].agents[0].sizing.qty_step", QUANTUM),
    ("qty-step-off-quantum", GATOR + ("sizing", "qty_step"), "0.000000015", "farms[0].agents[0].sizing.qty_step",
     "not a whole multiple of the ledger's quantum"),
    ("qty-step-1e15", GATOR + ("sizing", "qty_step"), "1e15", "farms[0].agents[0].sizing.qty_step", BEYOND),
    ("synthetic-bars-1e12", ("data", "bars"), 10**12, "data.bars", "held in memory"),
    ("weight-huge-exponent", ("master", "allocation", "weights", "trend"), "1e40", "master.allocation.weights.trend",
     "out of range"),
    ("take-profit-huge", GATOR + ("risk",), {"take_profit_pct": "1e31"}, "farms[0].agents[0].risk.take_profit_pct",
     "out of range"),
    ("lookback-huge", ("farms", 0, "allocation"), {"policy": "performance", "lookback_bars": 10**20},
     "farms[0].allocation.lookback_bars", "must be <= 1000000"),
]


@pytest.mark.parametrize(("where", "value", "path", "fragment"), [pytest.param(*a[1:], id=a[0]) for a in AMOUNTS])
def test_amounts_beyond_the_books_are_refused_with_their_path(demo_dict, where, value, path, fragment):
    _set(where, value)(demo_dict)
    issue = find_issue(issues_of(demo_dict), path, fragment)
    assert len(str(issue)) < 300


@pytest.mark.parametrize(
    ("where", "path"),
    [(("master", "initial_deposit"), "master.initial_deposit"), (GOAL_PROFIT, "goals[0].target.profit"),
     (GOAL_VOLUME, "goals[1].target.min_profit_per_trade"), (("data", "start_price"), "data.start_price")],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_amounts_beyond_the_books_are_refused_from_a_file(tmp_path, where, path):
    data = parse_yaml(DEMO_TEXT, "demo.yaml")
    _set(where, 1e20)(data)
    file = tmp_path / "amounts.yaml"
    file.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert "1.0e+20" in file.read_text(encoding="utf-8")  # a YAML float, as a user would write it
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert [str(i) for i in info.value.issues] == [f"{path}: 100000000000000000000 is {BEYOND} "
                                                   "(less than 10**15 in absolute value, 8 decimal places); use a smaller amount"]


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("master", "initial_deposit"), "999999999999999.99999999"),  # the largest amount the books hold
        (("master", "initial_deposit"), "0.00000001"),
        (("master", "initial_deposit"), "100.500000000"),  # trailing zeros are not places
        (GOAL_PROFIT, 0.1),
        (GATOR + ("sizing", "qty_step"), "0.00000001"),
        (GATOR + ("sizing", "qty_step"), 0.001),
        (GATOR + ("sizing", "qty_step"), "100"),
        (("data", "bars"), 10_000_000),
    ],
    ids=str,
)
def test_amounts_the_books_hold_are_accepted(demo_dict, where, value):
    _set(where, value)(demo_dict)
    config = config_from_dict(demo_dict)
    obj: Any = config
    for key in where:
        obj = obj[key] if isinstance(key, int) else getattr(obj, key)
    assert obj == (Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value)))


def test_relative_data_path_resolves_against_the_config_folder(tmp_path, monkeypatch):
    sub = tmp_path / "sub"
    sub.mkdir()
    csv = sub / "bars.csv"
    csv.write_text("time,open,high,low,close,volume\n", encoding="utf-8")
    text = DEMO_TEXT.replace(
        "data:\n  source: synthetic\n  symbol: SYN-USD\n  bars: 5000\n  seed: 42\n  timeframe: 1h\n",
        "data:\n  source: file\n  path: bars.csv\n",
    )
    assert "path: bars.csv" in text
    (sub / "cluster.yaml").write_text(text, encoding="utf-8")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert not Path("bars.csv").exists()
    config = load_config(Path("..") / "sub" / "cluster.yaml")  # relative to the cwd, too
    assert config.data.source == "file"
    assert config.data_path() is not None
    assert config.data_path().resolve() == csv.resolve()

    # The same relative path, where the cwd does not have it and no base is given, fails.
    data = parse_yaml(text, "cluster.yaml")
    find_issue(issues_of(data), "data.path", "file not found")


# -- frozen models that forbid unknown keys --------------------------------------------------


@pytest.mark.parametrize(
    ("getter", "field", "value"),
    [
        (lambda c: c, "name", "other"),
        (lambda c: c.master, "initial_deposit", Decimal(1)),
        (lambda c: c.master.allocation, "reserve_pct", Decimal(0)),
        (lambda c: c.farms[0], "type", "breakout"),
        (lambda c: c.farms[0].agents[0], "name", "x"),
        (lambda c: c.farms[0].agents[0].params, "jaw_period", 21),
        (lambda c: c.farms[0].agents[0].sizing, "fraction", Decimal("0.5")),
        (lambda c: c.goals[0], "name", "x"),
        (lambda c: c.goals[0].assign[0], "farm", "breakout"),
        (lambda c: c.risk, "max_position_fraction", Decimal("0.5")),
        (lambda c: c.data, "path", "other.csv"),
        (lambda c: c.costs, "fee_bps", 1.0),
        (lambda c: c.farms[0].runtime, "agents", "inline"),
        (lambda c: c.storage, "url", "postgresql://db/x"),
    ],
)
def test_models_are_frozen(getter, field, value):
    config = load_config(DEMO)
    model = getter(config)
    before = getattr(model, field)
    with pytest.raises(ValidationError):
        setattr(model, field, value)
    assert getattr(model, field) == before


def _models_below(tp: Any, seen: set[type]) -> None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return
        seen.add(tp)
        for field in tp.model_fields.values():
            _models_below(field.annotation, seen)
        return
    for arg in typing.get_args(tp):
        _models_below(arg, seen)


def test_every_model_below_cluster_config_is_frozen_and_forbids_extra_keys():
    seen: set[type] = set()
    _models_below(ClusterConfig, seen)
    names = {m.__name__ for m in seen}
    # The walk reaches the discriminated unions' members and the strategies' params.
    assert {"MasterConfig", "FixedPolicy", "EqualPolicy", "AlligatorParams", "ElliottParams", "DarvasParams",
            "Deadline", "PerformanceTarget", "FileData", "SyntheticData", "StorageConfig"} <= names
    for model in seen:
        assert model.model_config.get("extra") == "forbid", model.__name__
        assert model.model_config.get("frozen") is True, model.__name__


def _mappings(obj: Any, path: str = ""):
    """Every mapping in the parsed demo that is a model (not the free-form weights), with its path."""
    if isinstance(obj, dict):
        yield path, obj
        for key, value in obj.items():
            if key != "weights":
                yield from _mappings(value, f"{path}.{key}" if path else key)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _mappings(value, f"{path}[{i}]")


DEMO_MAPPING_PATHS = [p for p, _ in _mappings(parse_yaml(DEMO_TEXT, "demo"))]


def test_demo_has_mappings_at_every_level():
    assert len(DEMO_MAPPING_PATHS) > 25
    assert "farms[2].agents[0].params" in DEMO_MAPPING_PATHS
    assert "goals[2].deadline" in DEMO_MAPPING_PATHS


@pytest.mark.parametrize("where", DEMO_MAPPING_PATHS, ids=lambda p: p or "<root>")
def test_unknown_key_is_refused_at_every_level(demo_dict, where):
    dict(_mappings(demo_dict))[where]["zz_unknown"] = 1
    issues = issues_of(demo_dict)
    expected = f"{where}.zz_unknown" if where else "zz_unknown"
    assert [i.path for i in issues] == [expected]
    assert issues[0].message.startswith("unknown field")


# -- regressions: bugs found in the loader, now fixed --------------------------------------


def test_bug_unhashable_yaml_key_is_a_config_error(tmp_path):
    path = tmp_path / "complex-key.yaml"
    path.write_text("? [a, b]\n: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_config(path)


def test_bug_yaml_merge_keys_work():
    data = parse_yaml("base: &b {jaw_period: 21}\nparams: {<<: *b, lips_period: 4}\n", "merge.yaml")
    assert data["params"] == {"jaw_period": 21, "lips_period": 4}


def test_bug_boolean_integer_param_is_refused(demo_dict):
    demo_dict["farms"][0]["agents"][0]["params"]["jaw_period"] = True
    demo_dict["data"]["bars"] = False
    demo_dict["goals"][2]["target"] = {"min_win_rate": True}
    issues = issues_of(demo_dict)
    find_issue(issues, "farms[0].agents[0].params.jaw_period", "must be a number, not true")
    find_issue(issues, "data.bars", "must be a number, not false")
    find_issue(issues, "goals[2].target.min_win_rate", "must be a number, not true")


def test_bug_nan_min_sharpe_is_refused(demo_dict):
    demo_dict["goals"][2]["target"] = {"min_sharpe": float("nan")}
    demo_dict["farms"][2]["agents"][0]["params"]["target_ext"] = float("inf")
    issues = issues_of(demo_dict)
    find_issue(issues, "goals[2].target.min_sharpe", "must be a number")
    find_issue(issues, "farms[2].agents[0].params.target_ext", "must be a number")


def test_bug_typo_inside_optional_section_gets_a_suggestion(demo_dict):
    demo_dict["goals"][2]["deadline"] = {"bar": 2000}
    find_issue(issues_of(demo_dict), "goals[2].deadline.bar", "did you mean 'bars'")


def test_bad_weight_name_is_reported_at_its_key(demo_dict):
    demo_dict["master"]["allocation"]["weights"]["bad name"] = 1
    issue = find_issue(issues_of(demo_dict), "master.allocation.weights.bad name", "must start with a letter")
    assert "[key]" not in issue.path

"""Checks across fields, reported in the same pass as field errors: a config with a bad
field and an unknown name gets both at once, and nothing is reported about a name that
did not parse."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from cival.cli import main
from cival.config import MAX_ISSUES, ConfigError, config_from_dict, parse_yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"
DEMO_RAW = parse_yaml(DEMO.read_text(encoding="utf-8"), str(DEMO))


@pytest.fixture
def demo() -> dict[str, Any]:
    """A fresh copy of the demo config's parsed YAML (bundled bars), safe to mutate."""
    return copy.deepcopy(DEMO_RAW)


def issues_of(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, source="test.yaml", base=DEMO)
    assert info.value.total == len(info.value.issues)
    return [str(i) for i in info.value.issues]


# -- field errors and cross-reference errors in one pass -----------------------------------


def _field_errors(d: dict[str, Any]) -> None:
    d["master"]["initial_deposit"] = "-1"
    d["farms"][1]["agents"][0]["params"]["lookback"] = 0
    d["farms"][2]["type"] = "price-action"


FIELD_ERRORS = [
    "master.initial_deposit: must be > 0 (got '-1')",
    "farms[1].agents[0].params.lookback: must be > 0 (got 0)",
    "farms[2].type: must be one of 'trend_following', 'breakout' or 'price_action' (got 'price-action')",
]


def test_field_errors_and_unknown_names_are_reported_together(demo):
    _field_errors(demo)
    demo["master"]["allocation"]["weights"]["trnd"] = demo["master"]["allocation"]["weights"].pop("trend")
    demo["farms"][0]["allocation"] = {"policy": "fixed", "weights": {"gator-13-8-5": 1, "gator-2": 1}}
    demo["goals"][0]["assign"] = [{"farm": "breakot"}]
    demo["goals"][1]["assign"] = [{"agent": "darvas-20"}]
    assert issues_of(demo) == FIELD_ERRORS + [
        "master.allocation.weights.trnd: no farm named 'trnd'; did you mean 'trend'?",
        "master.allocation.weights: no weight for farm 'trend'; give every farm a weight",
        "farms[0].allocation.weights.gator-2: no agent named 'gator-2'; did you mean 'gator-13-8-5'?",
        "goals[0].assign[0].farm: no farm named 'breakot'; did you mean 'breakout'?",
        "goals[1].assign[0].agent: no agent named 'darvas-20'; did you mean 'darvas-20-3'?",
    ]


def _set(path: tuple, value: Any):
    def mutate(d: dict[str, Any]) -> None:
        obj = d
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value

    return mutate


def _all(*mutations):
    def mutate(d: dict[str, Any]) -> None:
        for m in mutations:
            m(d)

    return mutate


CROSS = [
    # (id, mutation, the issue it alone causes)
    ("weight-for-unknown-farm", _set(("master", "allocation", "weights", "zzz"), 0.1),
     "master.allocation.weights.zzz: no farm named 'zzz'; farms: trend, breakout, price-action"),
    ("duplicate-farm", _all(_set(("master", "allocation"), {"policy": "equal"}), _set(("goals", 1, "assign"), [{"farm": "trend"}]),
                            _set(("farms", 1, "name"), "trend")),
     "farms[1].name: duplicate farm name 'trend' (also at farms[0].name); names must be unique"),
    ("duplicate-agent", _set(("farms", 1, "agents", 0, "name"), "gator-13-8-5"),
     "farms[1].agents[0].name: duplicate agent name 'gator-13-8-5' (also at farms[0].agents[0].name); names must be unique"),
    ("duplicate-goal", _set(("goals", 1, "name"), "trend-profit"),
     "goals[1].name: duplicate goal name 'trend-profit' (also at goals[0].name); names must be unique"),
    ("master-min-share", _set(("master", "allocation"), {"policy": "performance", "min_share": 0.5}),
     "master.allocation.min_share: 0.5 for each of 3 farms is more than the whole amount; use at most 0.3333"),
    ("rebalance-off-checkpoint", _set(("farms", 0, "rebalance"), {"every_bars": 30}),
     "farms[0].rebalance.every_bars: 30 is not a multiple of checkpoint.every_bars (24); rebalancing happens at checkpoints"),
    ("master-liquidate", _set(("master", "rebalance"), {"liquidate": True}),
     "master.rebalance.liquidate: selling positions to rebalance across farms is not available yet; "
     "use it on farms, or leave it false"),
    ("data-file-missing", _set(("data", "path"), "no/such/bars.csv"),
     f"data.path: file not found: {DEMO.parent / 'no/such/bars.csv'} (a relative path is read from the config's folder)"),
]


@pytest.mark.parametrize(("mutate", "issue"), [pytest.param(m, i, id=n) for n, m, i in CROSS])
def test_each_cross_check_is_reported_with_the_field_errors(demo, mutate, issue):
    mutate(demo)
    assert issues_of(copy.deepcopy(demo)) == [issue]
    _field_errors(demo)
    assert issues_of(demo) == FIELD_ERRORS + [issue]


# -- nothing about names that did not parse ------------------------------------------------


def test_a_farm_whose_name_did_not_parse_is_not_reported_as_unknown(demo):
    demo["farms"][0]["name"] = "-trend"  # not a valid name: which farm "trend" meant is unknown
    issues = issues_of(demo)
    assert issues[0].startswith("farms[0].name: must start with a letter or digit")
    # The weight and the goal naming "trend" may mean that farm: not reported. The other
    # farms' weights are still checked.
    assert issues == [issues[0]]
    del demo["master"]["allocation"]["weights"]["breakout"]
    assert issues_of(demo)[1:] == ["master.allocation.weights: no weight for farm 'breakout'; give every farm a weight"]


def test_an_agent_whose_name_did_not_parse_is_not_reported_as_unknown(demo):
    demo["farms"][1]["agents"][0]["name"] = "darvas 20 3"
    demo["goals"][1]["assign"] = [{"agent": "darvas-20-3"}]
    issues = issues_of(demo)
    assert len(issues) == 1 and issues[0].startswith("farms[1].agents[0].name: must start with a letter or digit")


def test_an_agent_with_other_errors_still_counts_by_name(demo):
    demo["farms"][1]["agents"][0]["strategy"] = "ichimoku"
    demo["goals"][1]["assign"] = [{"agent": "darvas-20-3"}, {"agent": "darvas-20-4"}]
    assert issues_of(demo) == [
        "farms[1].agents[0].strategy: unknown strategy 'ichimoku'; expected one of 'alligator', 'darvas', 'elliott'",
        "goals[1].assign[1].agent: no agent named 'darvas-20-4'; did you mean 'darvas-20-3'?",
    ]


def test_a_part_that_did_not_parse_is_not_cross_checked(demo):
    demo["checkpoint"] = {"every_bars": 0}
    demo["farms"][0]["rebalance"] = {"every_bars": 30}  # a multiple of no valid checkpoint: unknown
    demo["goals"][0]["assign"] = [{"farm": "nowhere", "agent": "nobody"}]  # invalid itself
    demo["master"]["allocation"] = {"policy": "fixed", "weights": {"nowhere": -1}}
    demo["data"] = {"source": "file", "path": "no/such.csv", "max_move": 0}
    issues = issues_of(demo)
    assert [i.split(":")[0] for i in issues] == [
        "master.allocation.weights.nowhere", "goals[0].assign[0]", "checkpoint.every_bars", "data.max_move",
    ], issues


def test_farms_that_are_not_a_list_leave_the_other_checks(demo):
    demo["farms"] = {"trend": demo["farms"][0]}
    demo["goals"][1]["name"] = "trend-profit"
    issues = issues_of(demo)
    assert len(issues) == 2 and issues[0].startswith("farms: must be a list (got {'trend'")
    assert issues[1] == "goals[1].name: duplicate goal name 'trend-profit' (also at goals[0].name); names must be unique"


def test_the_cap_counts_field_and_cross_errors_together(demo):
    for i in range(MAX_ISSUES + 5):
        demo[f"zz{i}"] = i
    demo["master"]["allocation"]["weights"].update({f"nofarm{i}": 1 for i in range(7)})
    with pytest.raises(ConfigError) as info:
        config_from_dict(demo, base=DEMO)
    err = info.value
    assert err.total == MAX_ISSUES + 5 + 7
    assert len(err.issues) == MAX_ISSUES
    assert all(i.path.startswith("zz") for i in err.issues)
    assert str(err).endswith("  ... and 12 more")

    # With fewer field errors, the cross errors fill the list after them.
    demo = {k: v for k, v in demo.items() if not k.startswith("zz") or k in ("zz0", "zz1")}
    with pytest.raises(ConfigError) as info:
        config_from_dict(demo, base=DEMO)
    paths = [i.path for i in info.value.issues]
    assert paths == ["zz0", "zz1"] + [f"master.allocation.weights.nofarm{i}" for i in range(7)]
    assert info.value.total == 9


def test_cival_validate_prints_field_and_cross_errors_in_one_run(tmp_path, capsys):
    text = DEMO.read_text(encoding="utf-8")
    text = text.replace('initial_deposit: "100000.00"', 'initial_deposit: "-1"')
    text = text.replace("assign: [{farm: breakout}]", "assign: [{agent: darvas-20}]")
    assert text.count('"-1"') == 1 and "darvas-20}" in text
    path = tmp_path / "mine.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        f"{path}: 2 errors\n"
        "  master.initial_deposit: must be > 0 (got '-1')\n"
        "  goals[1].assign[0].agent: no agent named 'darvas-20'; did you mean 'darvas-20-3'?\n"
    )


# -- an agent's symbol must be the data's ----------------------------------------------------

AVAILABLE = "; a cluster trades one instrument: leave symbol out to trade"


def test_an_agent_naming_a_symbol_no_data_provides_is_refused(demo, tmp_path, capsys):
    demo["farms"][1]["agents"].append({"name": "eth", "strategy": "darvas", "symbol": "ETHUSDT"})
    assert issues_of(copy.deepcopy(demo)) == [
        "farms[1].agents[1].symbol: no data for 'ETHUSDT'; symbols available: 'BTCUSDT' (data.symbol)"
        + AVAILABLE + " 'BTCUSDT', or give data of 'ETHUSDT'"
    ]

    # Loading the file refuses it, so cival validate, cival paper and the notebook do.
    text = DEMO.read_text(encoding="utf-8").replace(
        "        strategy: darvas\n", "        strategy: darvas\n        symbol: ETHUSDT\n"
    )
    assert "symbol: ETHUSDT" in text
    path = tmp_path / "eth.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: 1 error\n  farms[1].agents[0].symbol: no data for 'ETHUSDT'; symbols available: 'BTCUSDT'")
    from cival.notebook import Cluster

    with pytest.raises(ConfigError, match=r"farms\[1\]\.agents\[0\]\.symbol: no data for 'ETHUSDT'"):
        Cluster.from_config(path)


def test_an_agent_naming_the_data_symbol_or_none_is_accepted(demo):
    from cival.actors.nodes import cluster_spec

    demo["farms"][0]["agents"][0]["symbol"] = "BTCUSDT"
    config = config_from_dict(demo, base=DEMO)
    spec = cluster_spec(config)
    assert spec.symbol == "BTCUSDT"
    assert [a.symbol for a in spec.agents] == ["BTCUSDT"] * 3
    assert [a.symbol for _, a in config.agents()] == ["BTCUSDT", None, None]


def test_symbols_differ_by_case(demo):
    demo["farms"][0]["agents"][0]["symbol"] = "btcusdt"
    (issue,) = issues_of(demo)
    assert issue.startswith("farms[0].agents[0].symbol: no data for 'btcusdt'; symbols available: 'BTCUSDT'")


def test_a_file_without_a_symbol_is_named_after_the_file(demo):
    del demo["data"]["symbol"]
    demo["farms"][2]["agents"][0]["symbol"] = "BTCUSDT"
    assert issues_of(demo) == [
        "farms[2].agents[0].symbol: no data for 'BTCUSDT'; symbols available: 'BTCUSDT-1h' "
        "(named after the data file; set data.symbol to name it otherwise)"
        + AVAILABLE + " 'BTCUSDT-1h', or give data of 'BTCUSDT'"
    ]
    demo["data"]["symbol"] = "BTCUSDT"
    assert config_from_dict(demo, base=DEMO).farms[2].agents[0].symbol == "BTCUSDT"


def test_synthetic_data_provides_its_symbol(demo):
    demo["data"] = {"source": "synthetic", "bars": 100}
    demo["farms"][0]["agents"][0]["symbol"] = "SYN-USD"
    (issue,) = issues_of(copy.deepcopy(demo))
    assert issue.startswith(
        "farms[0].agents[0].symbol: no data for 'SYN-USD'; symbols available: 'SYN' "
        "(synthetic data's default; set data.symbol to name it otherwise)"
    )
    demo["data"]["symbol"] = "SYN-USD"
    assert config_from_dict(demo).farms[0].agents[0].symbol == "SYN-USD"
    demo["data"]["symbol"] = "OTHER"
    (issue,) = issues_of(demo)
    assert issue.startswith("farms[0].agents[0].symbol: no data for 'SYN-USD'; symbols available: 'OTHER' (data.symbol)")


def test_the_symbol_check_comes_with_the_field_errors(demo):
    _field_errors(demo)
    demo["farms"][0]["agents"][0]["symbol"] = "ETHUSDT"
    demo["farms"][1]["agents"][0]["symbol"] = "ETHUSDT"  # this agent has a field error too
    issues = issues_of(demo)
    assert issues[:3] == FIELD_ERRORS
    assert [i.split(":")[0] for i in issues[3:]] == ["farms[0].agents[0].symbol", "farms[1].agents[0].symbol"]
    # A symbol that is not valid is a field error only; with data that did not parse, there
    # is no symbol to compare with.
    demo["farms"][0]["agents"][0]["symbol"] = "ETH USDT"
    demo["data"]["max_move"] = 0
    issues = issues_of(demo)
    assert [i.split(":")[0] for i in issues] == [
        "master.initial_deposit", "farms[0].agents[0].symbol", "farms[1].agents[0].params.lookback", "farms[2].type",
        "data.max_move",
    ]
    assert issues[1].startswith("farms[0].agents[0].symbol: must match")


def test_a_session_replaying_other_bars_refuses_an_agent_naming_the_config_symbol(demo):
    """The bars a session replays may be other than the config's (``cival paper --data FILE``
    names them after the file): the agents' symbols are checked against them too."""
    from cival.actors.nodes import cluster_spec
    from cival.session import Session, SessionConfig

    plain = config_from_dict(copy.deepcopy(demo), base=DEMO)
    spec = cluster_spec(plain, symbol="ETHUSDT")
    assert spec.symbol == "ETHUSDT" and {a.symbol for a in spec.agents} == {"ETHUSDT"}

    demo["farms"][2]["agents"][0]["symbol"] = "BTCUSDT"
    config = config_from_dict(demo, base=DEMO)
    assert cluster_spec(config).symbol == "BTCUSDT"
    with pytest.raises(ConfigError) as info:
        cluster_spec(config, symbol="ETHUSDT-1h")
    assert [str(i) for i in info.value.issues] == [
        "farms[2].agents[0].symbol: no data for 'BTCUSDT'; symbols available: 'ETHUSDT-1h' "
        "(the symbol of the bars this session replays)" + AVAILABLE + " 'ETHUSDT-1h', or give data of 'BTCUSDT'"
    ]
    assert info.value.source == str(DEMO)
    with pytest.raises(ConfigError, match=r"farms\[2\]\.agents\[0\]\.symbol: no data for 'BTCUSDT'"):
        Session(config, SessionConfig(local=True, symbol="ETHUSDT-1h", persist=False))

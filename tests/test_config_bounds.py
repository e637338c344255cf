"""What a config file may make: alias bombs, deep nesting, huge files and clusters are
refused quickly with a message naming the place; errors are listed up to a cap, values
in them bounded. Ordinary anchors, aliases and merges keep working."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cival.config import (
    MAX_AGENTS,
    MAX_ALIASES,
    MAX_CONFIG_BYTES,
    MAX_DEPTH,
    MAX_FARMS,
    MAX_ISSUES,
    MAX_VALUES,
    ConfigError,
    config_from_dict,
    load_config,
    parse_yaml,
)
from tests.helpers import GiB, run_cival

HEAD = (
    "version: 1\n"
    "name: bounds\n"
    "master: {initial_deposit: 1000}\n"
    "data: {source: synthetic, bars: 100}\n"
)
ONE_FARM = "farms: [{name: f, type: breakout, agents: [{name: a, strategy: darvas}]}]\n"


def nested_alias_bomb(levels: int = 9, width: int = 9) -> str:
    """Billion laughs under unknown keys: each level lists ``width`` aliases of the one
    before, so a few hundred bytes stand for width**levels strings."""
    lines = [HEAD + ONE_FARM.rstrip("\n"), "lol0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"lol{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def cluster_bomb(farms: int = 2_000, agents: int = 2_000) -> str:
    """A small file whose aliases make ``farms`` farms of ``agents`` agents each."""
    return (
        HEAD
        + "agent: &a {name: a, strategy: darvas}\n"
        + "agents: &as [" + ",".join(["*a"] * agents) + "]\n"
        + "farm: &f {name: f, type: breakout, agents: *as}\n"
        + "farms: [" + ",".join(["*f"] * farms) + "]\n"
    )


def refused_by_validate(tmp_path: Path, name: str, text: str) -> str:
    """Run ``cival validate`` on ``text`` in a bounded process (60 s, 1 GiB): a regression
    that expands the file fails here instead of holding the suite. Returns stderr."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = run_cival("validate", str(path), cwd=tmp_path, timeout=60, memory=GiB)
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr, result.stderr[-2000:]
    assert result.stdout == ""
    assert len(result.stderr) < 2_000, "the message must stay short"
    assert result.stderr.startswith(f"{path}: 1 error\n"), result.stderr
    return result.stderr


# -- alias bombs, in a bounded process -------------------------------------------------------


@pytest.mark.slow
def test_nested_alias_bomb_under_unknown_keys_is_refused_with_its_line(tmp_path):
    text = nested_alias_bomb()
    assert len(text) < 1_000 and text.count("*l") <= MAX_ALIASES  # small, and within the alias count
    message = refused_by_validate(tmp_path, "laughs.yaml", text)
    # The first level whose expansion passes the bound: 9**7 = 4,782,969 strings (lol6).
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("lol6:"))
    assert f"line {line}," in message
    assert f"more than {MAX_VALUES:,} values" in message
    assert "fewer aliases" in message


@pytest.mark.slow
def test_alias_bomb_of_farms_and_agents_is_refused(tmp_path):
    text = cluster_bomb()
    assert len(text) < 13_000
    message = refused_by_validate(tmp_path, "cluster.yaml", text)
    assert f"more than {MAX_ALIASES} aliases" in message
    assert "line 6," in message  # the agents list, whose 101st alias is one too many
    assert "write the repeated parts out" in message


@pytest.mark.slow
def test_alias_bomb_within_the_alias_count_is_refused_by_the_cluster_size(tmp_path):
    # 40 farms of the same 1,000 agents, written out once: 40 aliases, 40,000 agents.
    agents = ", ".join(f"{{name: a{i}, strategy: darvas}}" for i in range(1_000))
    text = HEAD + f"agents: &agents [{agents}]\n" + "farms: [" + ", ".join(
        f"{{name: f{i}, type: breakout, agents: *agents}}" for i in range(40)
    ) + "]\n"
    message = refused_by_validate(tmp_path, "wide.yaml", text)
    assert f"farms: 40,000 agents in all; a cluster may have at most {MAX_AGENTS:,}" in message


@pytest.mark.slow
def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path):
    text = HEAD + ONE_FARM + "deep: " + "[" * 100_000 + "\n"
    message = refused_by_validate(tmp_path, "deep.yaml", text)
    assert f"nested more than {MAX_DEPTH} levels deep" in message
    assert "line 6," in message


@pytest.mark.slow
def test_a_number_python_cannot_read_is_a_config_error(tmp_path):
    text = HEAD + ONE_FARM + "seed: " + "7" * 5_000 + "\n"
    message = refused_by_validate(tmp_path, "digits.yaml", text)
    assert "line 6, column 7: the number 777" in message and "has too many digits" in message


# -- the same bounds, in this process -----------------------------------------------------------


def test_an_alias_of_its_own_anchor_is_refused():
    with pytest.raises(ConfigError) as info:
        parse_yaml("a: &self [1, *self]\n", "self.yaml")
    assert "alias *self is used inside the value it names" in str(info.value)
    assert "line 1, column 14" in str(info.value)


def test_alias_count_is_bounded_but_the_bound_itself_is_allowed():
    within = parse_yaml("x: &x 1\nys: [" + ", ".join(["*x"] * MAX_ALIASES) + "]\n", "ok.yaml")
    assert within["ys"] == [1] * MAX_ALIASES
    with pytest.raises(ConfigError) as info:
        parse_yaml("x: &x 1\nys: [" + ", ".join(["*x"] * (MAX_ALIASES + 1)) + "]\n", "many.yaml")
    assert f"more than {MAX_ALIASES} aliases" in str(info.value)


def test_file_over_the_size_cap_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    padding = "# " + "x" * 78 + "\n"
    path.write_text(HEAD + ONE_FARM + padding * (MAX_CONFIG_BYTES // len(padding) + 1), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "a config may hold at most 1,048,576 (1 MiB)" in str(info.value)
    with pytest.raises(ConfigError):
        parse_yaml(path.read_text(encoding="utf-8"), "big.yaml")


def test_a_file_just_under_the_size_cap_is_read(tmp_path):
    path = tmp_path / "padded.yaml"
    text = HEAD + ONE_FARM
    padding = "# " + "x" * 78 + "\n"
    path.write_text(text + padding * ((MAX_CONFIG_BYTES - len(text)) // len(padding)), encoding="utf-8")
    assert path.stat().st_size <= MAX_CONFIG_BYTES
    assert load_config(path).name == "bounds"


def _cluster(farms: int, agents_per_farm: int) -> dict[str, Any]:
    return {
        "name": "big",
        "master": {"initial_deposit": 1000},
        "data": {"source": "synthetic"},
        "farms": [
            {"name": f"f{i}", "type": "breakout",
             "agents": [{"name": f"a{i}-{j}", "strategy": "darvas"} for j in range(agents_per_farm)]}
            for i in range(farms)
        ],
    }


def test_farm_and_agent_caps_are_checked_on_the_raw_lists():
    with pytest.raises(ConfigError) as info:
        config_from_dict(_cluster(MAX_FARMS + 1, 1))
    assert [str(i) for i in info.value.issues] == [
        f"farms: {MAX_FARMS + 1:,} farms; a cluster may have at most {MAX_FARMS:,}: split it into several"
    ]
    with pytest.raises(ConfigError) as info:
        config_from_dict(_cluster(11, MAX_AGENTS // 10))
    assert info.value.issues[0].message.startswith(f"{MAX_AGENTS + MAX_AGENTS // 10:,} agents in all")


def test_a_cluster_at_the_caps_is_valid():
    config = config_from_dict(_cluster(MAX_FARMS, MAX_AGENTS // MAX_FARMS))
    assert len(config.farms) == MAX_FARMS
    assert len(config.agents()) == MAX_AGENTS


# -- error listing -------------------------------------------------------------------------------


def test_errors_are_listed_up_to_the_cap_then_counted(tmp_path):
    data = _cluster(1, 1)
    for i in range(MAX_ISSUES + 30):
        data[f"zz{i}"] = i
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, source="many.yaml")
    err = info.value
    assert err.total == MAX_ISSUES + 30
    assert len(err.issues) == MAX_ISSUES
    lines = str(err).splitlines()
    assert lines[0] == f"many.yaml: {MAX_ISSUES + 30} errors"
    assert lines[-1] == "  ... and 30 more"
    assert len(lines) == MAX_ISSUES + 2


def test_cross_field_errors_are_capped_too():
    data = _cluster(3, 1)
    data["master"]["allocation"] = {"policy": "fixed", "weights": {f"nofarm{i}": 1 for i in range(200)}}
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    err = info.value
    assert err.total == 200 + 3  # every unknown name, and a missing weight for each farm
    assert len(err.issues) == MAX_ISSUES
    assert str(err).endswith(f"  ... and {203 - MAX_ISSUES} more")


def test_values_and_keys_in_errors_are_bounded():
    huge = ["x" * 1000] * 1000
    data = _cluster(1, 1)
    data["master"]["initial_deposit"] = [huge, huge]
    data["farms"][0]["agents"][0]["params"] = {"k" * 10_000: 1}
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    text = str(info.value)
    assert len(text) < 1_000
    deposit = next(i for i in info.value.issues if i.path == "master.initial_deposit")
    assert deposit.message.startswith("must be a number (got [['xxxx") and len(deposit.message) < 100
    assert any(i.path.startswith("farms[0].agents[0].params.kkkk") and i.path.endswith("...") for i in info.value.issues)


# -- ordinary anchors and merges ----------------------------------------------------------------

ANCHORS = """\
version: 1
name: anchors
master: {initial_deposit: "10000", allocation: &split {policy: equal, reserve_pct: 5}}
farms:
  - name: trend
    type: trend_following
    allocation: *split
    agents:
      - &gator {name: g1, strategy: alligator, sizing: &sizing {fraction: 0.5, qty_step: 0.001}}
      - {<<: *gator, name: g2, params: {jaw_period: 21}}
      - <<: *gator
        name: g3
        sizing: {fraction: 1}
  - name: trend-b
    type: trend_following
    agents: [{name: g4, strategy: alligator, sizing: *sizing}]
data: {source: synthetic, bars: 100}
"""


def test_anchors_aliases_and_merges_still_work(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(ANCHORS, encoding="utf-8")
    config = load_config(path)
    assert config.farms[0].allocation == config.master.allocation
    assert str(config.farms[0].allocation.reserve_pct) == "5"
    g1, g2, g3 = config.farms[0].agents
    (g4,) = config.farms[1].agents
    assert [a.name for a in (g1, g2, g3, g4)] == ["g1", "g2", "g3", "g4"]
    assert (g1.strategy, str(g1.sizing.fraction), str(g1.sizing.qty_step)) == ("alligator", "0.5", "0.001")
    assert g2.params.jaw_period == 21 and g1.params.jaw_period == 13
    assert g2.sizing == g1.sizing == g4.sizing
    assert str(g3.sizing.fraction) == "1" and g3.sizing.qty_step != g1.sizing.qty_step  # replaced whole, not merged

"""Data shipped with Cival, named ``cival:data/...`` in a config: found from any folder, so a
copy of the demo config works where it is copied; an unknown name lists what ships."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cival.cli import main
from cival.config import BUNDLED, ConfigError, bundled_data, config_from_dict, load_config, parse_yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"
SHIPPED = REPO / "configs" / "data" / "BTCUSDT-1h.csv.gz"


def test_the_demo_names_its_bars_as_shipped_data():
    config = load_config(DEMO)
    assert config.data.path.startswith(BUNDLED)
    assert config.data_path().resolve() == SHIPPED.resolve()


def test_bundled_data_lists_the_bars_files_that_ship_and_nothing_else():
    shipped = bundled_data()
    assert shipped["cival:data/BTCUSDT-1h.csv.gz"].resolve() == SHIPPED.resolve()
    assert all(path.is_file() for path in shipped.values())
    # The folder's README is not data.
    assert (SHIPPED.parent / "README.md").is_file()
    assert not any(name.endswith("README.md") for name in shipped)


def test_a_copy_of_the_demo_config_loads_and_validates_from_another_folder(tmp_path, monkeypatch, capsys):
    copy = tmp_path / "mine" / "demo.yaml"
    copy.parent.mkdir()
    shutil.copy(DEMO, copy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert not (copy.parent / "data").exists()

    config = load_config(copy)
    assert config.source == copy.resolve()
    assert config.data_path().resolve() == SHIPPED.resolve()

    assert main(["validate", str(copy)]) == 0
    out = capsys.readouterr()
    assert f"{copy}: OK" in out.out and out.err == ""


def test_a_relative_path_still_reads_from_the_config_folder(tmp_path):
    folder = tmp_path / "conf"
    (folder / "data").mkdir(parents=True)
    mine = folder / "data" / "BTCUSDT-1h.csv.gz"
    shutil.copy(SHIPPED, mine)
    text = DEMO.read_text(encoding="utf-8").replace("path: cival:data/", "path: data/")
    assert "path: data/BTCUSDT-1h.csv.gz" in text
    (folder / "demo.yaml").write_text(text, encoding="utf-8")
    assert load_config(folder / "demo.yaml").data_path().resolve() == mine.resolve()

    # Beside a config with no data folder, the same relative path is not found.
    (tmp_path / "demo.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "demo.yaml")
    assert [i.path for i in info.value.issues] == ["data.path"]
    assert "file not found" in info.value.issues[0].message


@pytest.mark.parametrize(
    "name",
    [
        "cival:data/ETHUSDT-1h.csv.gz",  # not shipped
        "cival:BTCUSDT-1h.csv.gz",  # without its folder
        "cival:data/README.md",  # ships, but is not bars
        "cival:demo.yaml",
        "cival:data/../data/BTCUSDT-1h.csv.gz",  # only the names listed, never a path built from one
        "cival:",
    ],
)
def test_an_unknown_bundled_name_is_refused_with_what_ships(name):
    raw = parse_yaml(DEMO.read_text(encoding="utf-8"), "demo.yaml")
    raw["data"]["path"] = name
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, source="mine.yaml", base=DEMO)
    assert [i.path for i in info.value.issues] == ["data.path"]
    message = info.value.issues[0].message
    assert f"no bundled data named {name!r}" in message
    assert "Cival ships cival:data/BTCUSDT-1h.csv.gz" in message


def test_an_unknown_bundled_name_fails_cival_validate(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text(DEMO.read_text(encoding="utf-8").replace("cival:data/BTCUSDT-1h", "cival:data/BTCUSD-1h"), encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: 1 error\n")
    assert "  data.path: no bundled data named 'cival:data/BTCUSD-1h.csv.gz'; Cival ships cival:data/BTCUSDT-1h.csv.gz" in err

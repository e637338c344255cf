"""The README's Python example runs and prints what the README says it prints."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.splitlines()[0][:40])
def test_readme_python_example_prints_what_it_claims(block):
    claimed = re.search(r"print\(.*\)\s+#\s*(.+)$", block, flags=re.M)
    assert claimed, "each example should end with a print and a comment giving its output"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(README), "exec"), {})
    assert out.getvalue().strip() == claimed.group(1).strip()


def test_readme_names_the_commands_the_cli_has():
    from cival.cli import build_parser

    text = README.read_text(encoding="utf-8")
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in commands:
        assert f"`cival {name}" in text, f"README does not document `cival {name}`"

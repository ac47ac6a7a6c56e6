"""The README's promises stay true: its commands, its configuration table, and CI running its test commands."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from breeboost.cli import COMMANDS, build_parser
from breeboost.settings import env_var, setting_fields

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _fenced_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    return [line.split("#")[0].strip() for b in blocks for line in b.splitlines() if line.split("#")[0].strip()]


def test_readme_starts_with_setup_demo_and_test_commands():
    first = _fenced_commands()[:2]
    assert "pip install -e '.[embedded,test,dashboard]'" in first[0] and first[0].endswith("breeboost demo")
    assert first[1] == ".venv/bin/python -m pytest"


def test_ci_runs_the_readme_test_commands():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    tests = [c for c in _fenced_commands() if "-m pytest" in c]
    assert tests, "README shows no test command"
    for cmd in tests:
        assert cmd in ci, f"{cmd!r} is not run by .ci/run"


def test_configuration_table_lists_every_setting():
    for f in setting_fields():
        row = f"| `{env_var(f.name)}` | `--{f.name.replace('_', '-')}` |"
        assert row in README, f"README lacks {env_var(f.name)}"


def test_breeboost_commands_in_readme_parse():
    parser = build_parser()
    for cmd in _fenced_commands():
        words = shlex.split(cmd)
        for i, w in enumerate(words):
            if w.endswith("breeboost") and i + 1 < len(words) and words[i + 1] in COMMANDS:
                parser.parse_args(words[i + 1:])

"""The README is the manual: every setting the code reads is in its settings table."""

from __future__ import annotations

import re

from tests.support import ROOT


def test_every_setting_is_documented_with_a_default() -> None:
    code = (ROOT / "service" / "settings.py").read_text()
    names = set(re.findall(r'\(env, "([A-Z_]+)"', code))
    assert len(names) > 30
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Settings") :]
    documented = set(re.findall(r"^\| `CALLBOARD_([A-Z_]+)` \| [^|]+ \|", table, re.M))
    assert names - documented == set()


def test_readme_starts_with_the_two_newcomer_commands() -> None:
    head = (ROOT / "README.md").read_text().split("## Contents")[0]
    blocks = re.findall(r"```sh\n(.*?)```", head, re.S)
    assert "callboard serve" in blocks[0]
    assert blocks[1].strip() == "scripts/test"

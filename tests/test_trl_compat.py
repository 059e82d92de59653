"""The TRL version guard (safealign.train.trl_compat): the private names safealign touches exist in
the pinned TRL, and another version or a missing name fails naming the version and the name."""

import re
from pathlib import Path

import pytest

from safealign.train import trl_compat

REPO = Path(__file__).resolve().parents[1]


def test_the_pinned_trl_is_the_tested_one_and_has_every_touched_name():
    pin = re.search(r'"trl==([^"]+)"', (REPO / "pyproject.toml").read_text())[1]
    assert pin == trl_compat.TESTED_TRL
    trl_compat.check()


def test_another_trl_version_fails_naming_it():
    with pytest.raises(trl_compat.TRLCompatError, match=r"written for TRL 1\.16\.0, this is TRL 9\.9\.9"):
        trl_compat.check("9.9.9")


@pytest.mark.parametrize("module, attr", trl_compat.TOUCHED)
def test_a_missing_touched_name_fails_naming_it(module, attr, monkeypatch):
    from importlib import import_module

    owner = import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    monkeypatch.delattr(owner, name)
    with pytest.raises(trl_compat.TRLCompatError, match=re.escape(f"missing: {module}.{attr}")):
        trl_compat.check()


def test_no_other_module_touches_a_private_trl_name():
    """Every private TRL name in the package is named in trl_compat alone."""
    private = {attr.split(".")[-1] for _, attr in trl_compat.TOUCHED}
    for path in (REPO / "src" / "safealign").rglob("*.py"):
        if path.name == "trl_compat.py":
            continue
        text = path.read_text()
        assert not [n for n in private if re.search(rf"\b{n}\b", text)], path

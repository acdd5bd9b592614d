"""The config checks' own helpers: key paths and messages, built by hand from the house format (infra/config.py
ConfigError: one line per problem naming the stack, the key path, the bad value and what is accepted)."""

from __future__ import annotations

import pytest

from infra.config import PLATFORM_KEY, ConfigError, _dns_label, _unique, key_path


def test_key_path_forms() -> None:
    assert key_path(()) == PLATFORM_KEY
    assert key_path(("models", 0, "name")) == f"{PLATFORM_KEY}.models[0].name"
    assert key_path(("teams", "a b")) == f"{PLATFORM_KEY}.teams['a b']"
    assert key_path(("x.y-z_1",)) == f"{PLATFORM_KEY}.x.y-z_1"


@pytest.mark.parametrize("name", ["a", "llama-3", "a" * 40, "a1"])
def test_dns_labels_accepted(name: str) -> None:
    assert _dns_label(name) == name


@pytest.mark.parametrize("name", ["", "1a", "-a", "a-", "A", "a_b", "a" * 41])
def test_dns_labels_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not a valid name: use 1-40 lowercase letters"):
        _dns_label(name)


def test_unique_names_each_repeat_once_per_extra_use() -> None:
    problems: list[str] = []
    _unique(problems, "models", ["a", "b", "a", "a"])
    assert problems == ["models: name 'a' is used twice", "models: name 'a' is used twice"]


def test_config_error_lists_every_problem_on_its_own_line() -> None:
    error = ConfigError("dev", ["x: bad", "y: worse"])
    assert str(error) == "stack 'dev': 2 problem(s) in its configuration:\n  - x: bad\n  - y: worse"
    assert error.stack == "dev" and error.problems == ["x: bad", "y: worse"]

"""Config errors stay one line per problem even when a configured name holds a line break (found by
tests/test_config_fuzz.py: a route model "\\r" listed among the known routes split the message)."""

from __future__ import annotations

import pytest
from llm_gateway.config import ConfigError, parse_config


def test_known_names_with_line_breaks_are_quoted() -> None:
    raw = {
        "server": {"require_api_key": False},
        "backends": [{"name": "b", "kind": "vllm", "url": "http://x:1/v1"}],
        "routes": [{"model": "llama", "targets": [{"backend": "b"}]}, {"model": "\r", "targets": [{"backend": "b"}]}],
        "aliases": [{"simple_route": "llama", "complex_route": "gone"}],
    }
    with pytest.raises(ConfigError) as raised:
        parse_config(raw, source="c.yaml")
    first, *problems = str(raised.value).splitlines()
    assert first == "c.yaml is invalid:"
    assert len(problems) == 1
    assert "aliases[0].complex_route: 'gone' is not defined; known: '\\r', llama" in problems[0]

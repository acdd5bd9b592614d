"""A store URL that is no URL is a config error naming the variable, never a traceback, never the secret itself."""

from __future__ import annotations

import pytest
from llm_gateway.accounting import Ledger
from llm_gateway.config import ConfigError, LedgerConfig, LimitStoreConfig
from llm_gateway.ledger import UsageLedger
from llm_gateway.metrics import Metrics
from llm_gateway.shared_limits import SharedLimits
from prometheus_client import CollectorRegistry

SECRET = "s3cret-canary"


@pytest.mark.parametrize("value", [SECRET, f"mysql://u:{SECRET}@h/db", f"http://{SECRET}@h"])
def test_ledger_dsn_that_is_not_postgresql(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LEDGER_DSN", value)
    with pytest.raises(ConfigError) as error:
        UsageLedger(LedgerConfig(), CollectorRegistry())
    assert str(error.value).startswith("ledger.dsn_env: ")
    assert "'LEDGER_DSN'" in str(error.value) and SECRET not in str(error.value)


@pytest.mark.parametrize("value", [SECRET, f"http://:{SECRET}@h:6379", f"postgresql://:{SECRET}@h"])
def test_limit_store_url_that_is_not_redis(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LIMIT_STORE_URL", value)
    with pytest.raises(ConfigError) as error:
        SharedLimits(LimitStoreConfig(), [], Metrics(), Ledger())
    assert str(error.value).startswith("limit_store.url_env: ")
    assert "LIMIT_STORE_URL" in str(error.value) and SECRET not in str(error.value)


def test_well_formed_urls_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing connects at construction: hosts that cannot be reached are the store being down, not bad config.
    monkeypatch.setenv("LEDGER_DSN", "postgresql://gateway:pw@ledger.invalid:5432/ledger")
    monkeypatch.setenv("LIMIT_STORE_URL", "rediss://:tok@limits.invalid:6379/0")
    assert UsageLedger(LedgerConfig(), CollectorRegistry()).dsn.endswith("/ledger")
    assert SharedLimits(LimitStoreConfig(), [], Metrics(), Ledger()).config.on_failure == "open"

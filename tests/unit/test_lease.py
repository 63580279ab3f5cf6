"""indexer.lease without a cluster: the lease length read from the environment. The lease itself (taken,
renewed, lost, taken over) needs the node: tests/integration/test_lease.py."""

import pytest

from indexer.errors import ConfigError
from indexer.lease import lease_seconds


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf", "10s"])
def test_an_invalid_lease_length_is_a_config_error_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("INDEXER_LEASE_SECONDS", value)
    with pytest.raises(ConfigError, match="INDEXER_LEASE_SECONDS must be a positive number of seconds") as caught:
        lease_seconds()
    assert caught.value.exit_code == 2

"""Opening the cluster: one ``Engine`` per run, its client chosen by what answers ``GET /``.

::

    TargetConfig --open_engine()--> client options (auth, TLS; secrets from the environment)
        --GET / (unanswered: tried on each node of url once, then an error: a configuration problem)--> the product
        --> Engine with the matching client (opensearch-py or elasticsearch), or one line naming the mismatch
    opened(target, engine) --> the caller's engine, or one opened for a block and closed after
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from indexer.clients import client_options, make_client
from indexer.config import TargetConfig
from indexer.engine import ClusterInfo, Engine, ProductCheckError, cluster_info
from indexer.errors import ConfigError
from indexer.retry import RetryPolicy

log = logging.getLogger(__name__)


def _mismatch(target: TargetConfig, info: ClusterInfo) -> ConfigError:
    """The one line for ``target.engine`` naming the other product than the one that answered."""
    product = {"opensearch": "OpenSearch", "elasticsearch": "Elasticsearch"}.get(info.flavor)
    if product is None:
        return ConfigError(f"target.engine is {target.engine!r} but the server at {target.where} does not "
                           "answer GET / like Elasticsearch or OpenSearch")
    if info.flavor == target.engine:  # Elasticsearch older than 7.14 sends no product header
        return ConfigError(f"the cluster at {target.where} is {product} {info.version}, which the elasticsearch "
                           "client does not support (it needs 7.14 or later)")
    return ConfigError(f'target.engine is "{target.engine}" but the cluster at {target.where} is {product} '
                       f'{info.version}; set engine = "{info.flavor}" or "auto"')


@contextlib.asynccontextmanager
async def opened(target: TargetConfig, engine: Engine | None = None) -> AsyncIterator[Engine]:
    """``engine`` when a caller already has one (left open), else one opened for the block and closed after."""
    if engine is not None:
        yield engine
        return
    own = await open_engine(target)
    try:
        yield own
    finally:
        await own.close()


async def open_engine(target: TargetConfig, env: dict[str, str] | None = None) -> Engine:
    """Connect and say hello (``GET /``, unanswered: each node once); ``engine = "auto"`` picks the client from
    the answer."""
    if target.cloud_id and target.engine == "opensearch":
        raise ConfigError("target.cloud_id is an Elastic Cloud setting; use engine = \"elasticsearch\"")
    if not target.verify_certs:
        log.warning("TLS certificate verification is OFF (target.verify_certs = false): "
                    "anyone on the network path can read and change what is sent")
    guess = target.engine
    if guess == "auto":
        guess = "elasticsearch" if target.cloud_id else "opensearch"
    opts = client_options(target, env)
    policy = RetryPolicy(max_retry_time=target.max_retry_time)

    def engine_for(flavor: str) -> Engine:
        client = make_client(flavor, target, opts)
        return Engine(client, flavor, target.where, policy, nodes=1 if target.cloud_id else len(target.urls))

    engine = engine_for(guess)
    try:
        info = await engine.info()
        mismatch = None if target.engine != "opensearch" or info.flavor == "opensearch" else info
    except ProductCheckError as exc:
        info = mismatch = cluster_info(exc.body)
    except BaseException:
        await engine.close()
        raise
    if mismatch is not None:
        await engine.close()
        raise _mismatch(target, mismatch)
    if info.flavor != guess:  # engine = "auto", answered by the other product
        await engine.close()
        flavor = "opensearch" if info.flavor == "opensearch" else "elasticsearch"
        engine = engine_for(flavor)
    return engine

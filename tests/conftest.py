"""Shared pytest fixtures: a real Kafka cluster for ``@pytest.mark.kafka`` tests.

``kafka_bootstrap`` is the external cluster named by
``PULSE_TEST_KAFKA_BOOTSTRAP`` when set, otherwise a single-node broker started
once per test session (see ``tests/kafka_broker.py``). If that broker cannot be
started the requesting tests fail with the broker's error; they never skip.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping

import pytest

from tests.kafka_broker import KafkaBroker, create_topic, delete_topics, external_bootstrap, unique_topic


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``bootstrap.servers`` of the Kafka cluster under test."""
    external = external_bootstrap()
    if external:
        yield external
        return
    with KafkaBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def kafka_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Factory ``make(prefix="t", partitions=1, config=None) -> name`` creating
    a uuid-named topic. Topics are deleted at teardown only on an external
    cluster (best effort); the session broker is thrown away anyway."""
    created: list[str] = []

    def make(prefix: str = "t", partitions: int = 1, config: Mapping[str, str] | None = None) -> str:
        name = create_topic(kafka_bootstrap, unique_topic(prefix), partitions, config)
        created.append(name)
        return name

    yield make
    if external_bootstrap():
        delete_topics(kafka_bootstrap, created)

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.outbox import consumers  # noqa: F401  (registers the relay's consumers)
from crm.outbox.relay import RelayResult, relay
from crm.webhooks.delivery import RunResult, deliver_pending
from tests.fakes.webhook_receiver import Receiver, running
from tests.redis_server import free_port


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[Receiver]:
    with running(Receiver(), free_port()) as receiver:
        yield receiver


@pytest.fixture
def receiver(receiver_server: Receiver) -> Iterator[Receiver]:
    receiver_server.reset()
    yield receiver_server
    receiver_server.reset()


async def pump(
    maker: async_sessionmaker[AsyncSession], *webhook_ids: int
) -> tuple[RelayResult, list[RunResult]]:
    """What the worker does after a commit: relay the outbox, then run the delivery job of every
    subscription that got deliveries (and of `webhook_ids`)."""
    relayed = await relay(maker)
    runs = [await deliver_pending(maker, w) for w in sorted(relayed.webhooks | set(webhook_ids))]
    return relayed, runs

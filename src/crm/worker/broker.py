"""The Redis broker transport with one repair: a worker survives losing the broker while it holds
unacknowledged messages.

When the connection to Redis drops, Celery collects the consumer's connection and then closes it.
Closing the channel asks kombu's Redis QoS to put the unacknowledged messages (`acks_late` tasks
running or reserved) back on the queue, and a task finishing later acks on that channel; by then
the collected connection has no parameters left and kombu raises `AttributeError` (not a connection
error), which Celery treats as unrecoverable: the worker process exited and took `make run` down
with it. Here the channel answers with a connection error instead, which Celery logs and survives:
the messages stay in Redis's unacked set (restored by kombu after `visibility_timeout` if they are never
acked) and the tasks already running keep running — our jobs do not need the broker while they run,
and a redelivered job that is already terminal does nothing.

`crm.worker.app` installs this transport for `redis://` and `rediss://` broker URLs.
"""

from __future__ import annotations

from typing import Any

from kombu import transport as kombu_transport
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            # The connection was collected after a broker loss: say so with a connection error,
            # which Celery and kombu handle (log, reconnect), instead of an AttributeError.
            raise kombu_redis.get_redis_ConnectionError()("the broker connection was closed")  # type: ignore[no-untyped-call]
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Use this transport for every Redis broker URL of this process."""
    for scheme in ("redis", "rediss"):
        kombu_transport.TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
        kombu_transport._transport_cache.pop(scheme, None)

"""Redis and RQ: they only ring the bell, the database holds the truth."""

from __future__ import annotations

from functools import lru_cache

from redis import Redis
from rq import Queue


@lru_cache(maxsize=8)
def get_redis(url: str) -> Redis:
    return Redis.from_url(url)


def get_queue(url: str, name: str) -> Queue:
    return Queue(name, connection=get_redis(url))

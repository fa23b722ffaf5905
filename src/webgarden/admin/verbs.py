"""The appcmd-style verbs the control socket carries out on a running server.

    list apppools | list wp | list requests
    recycle apppool NAME | stop apppool NAME | start apppool NAME
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

import psutil

from webgarden.admin.control import ControlError, Handler
from webgarden.listener import errors
from webgarden.manager.states import PoolState

if TYPE_CHECKING:
    from webgarden.listener.server import Listener
    from webgarden.manager.pool import AppPool


class Server(Protocol):
    """What the verbs need of the server (which hands itself in: no import of it here)."""

    pools: dict[str, AppPool]
    listener: Listener


def handler(server: Server) -> Handler:
    async def handle(request: dict[str, Any]) -> Any:
        verb, obj = request.get("verb"), request.get("object")
        if verb == "list" and obj == "apppools":
            return [_pool_row(pool) for pool in server.pools.values()]
        if verb == "list" and obj == "wp":
            return [_worker_row(pool, w) for pool in server.pools.values() for w in pool.workers]
        if verb == "list" and obj == "requests":
            return _requests(server)
        if verb == "list" and obj == "certs":  # the certificates in service (tls.py)
            return server.listener.certs.rows()
        if obj == "cache" and verb == "flush":
            site = request.get("name")
            return {"flushed": server.listener.local.cache.flush(site or None)}
        if obj == "cache" and verb == "stats":
            stats = server.listener.local.cache.stats
            return {name: getattr(stats, name) for name in stats.__slots__}
        if obj == "apppool" and verb in ("recycle", "stop", "start"):
            pool = server.pools.get(str(request.get("name")))
            if pool is None:
                raise ControlError(f"no application pool named {request.get('name')!r}")
            return await _pool_verb(server, pool, str(verb))
        raise ControlError(f"unknown request: {verb} {obj}")

    return handle


def _pool_row(pool: AppPool) -> dict[str, Any]:
    return {
        "name": pool.config.name,
        "state": pool.state.value,
        "workers": len([w for w in pool.workers if w.alive]),
        "maxProcesses": pool.config.max_processes,
        "queued": len(pool.queue.waiting),
        "queueLength": pool.queue.limit,
        "rejected": pool.queue.rejected,
        "triggers": list(pool.triggers.armed),
    }


def _worker_row(pool: AppPool, worker: Any) -> dict[str, Any]:
    try:
        memory = psutil.Process(worker.pid).memory_info()
        rss, private = memory.rss, memory.rss - getattr(memory, "shared", 0)
    except (psutil.Error, ValueError):
        rss = private = None
    link = worker.link
    return {
        "pid": worker.pid,
        "pool": pool.config.name,
        "state": worker.state.value,
        "retiring": worker.retiring,
        "uptime": round(time.time() - worker.started_at, 1),
        "requests": link.served if link else 0,
        "executing": link.inflight if link else 0,
        "rss": rss,
        "private": private,
        "user": pool.identity.user if pool.identity else None,
    }


def _requests(server: Server) -> list[dict[str, Any]]:
    now = server.listener.now
    rows = []
    for pool in server.pools.values():
        for worker in pool.workers:
            if worker.link is None:
                continue
            for ex in worker.link.streams.values():
                rows.append(_request_row(pool, ex, now, worker.pid))
        for ex in pool.queue.waiting:
            rows.append(_request_row(pool, ex, now, None))
    return rows


def _request_row(pool: AppPool, ex: Any, now: float, pid: int | None) -> dict[str, Any]:
    return {
        "pool": pool.config.name,
        "pid": pid,
        # An open WebSocket (its 101 sent) is "websocket", its age the socket's.
        "state": ("websocket" if ex.websocket is not None and ex.status == 101
                  else "executing" if pid else "queued"),
        "method": ex.method,
        "url": ex.target.decode("latin-1"),
        "client": f"{ex.conn.client[0]}:{ex.conn.client[1]}",
        "age": round(now - ex.since, 1),
    }


async def _pool_verb(server: Server, pool: AppPool, verb: str) -> dict[str, Any]:
    name = pool.config.name
    if verb == "recycle":
        if pool.state is not PoolState.STARTED:
            raise ControlError(f"pool {name!r} is {pool.state.value}: only a started pool recycles")
        old = [w.pid for w in pool.workers if w.alive and not w.retiring]
        pool.recycle("OnDemand")
        return {"pool": name, "recycling": old}
    if verb == "stop":
        if pool.state in (PoolState.STOPPING, PoolState.STOPPED):
            raise ControlError(f"pool {name!r} is already {pool.state.value}")
        pool.shut_down(errors.POOL_DISABLED)
        return {"pool": name, "state": "Stopping"}
    if pool.state is not PoolState.STOPPED:
        raise ControlError(f"pool {name!r} is {pool.state.value}, not Stopped")
    pool.start()
    return {"pool": name, "state": pool.state.value}

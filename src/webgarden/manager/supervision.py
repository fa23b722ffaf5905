"""The supervisor's vocabulary: the events it hears and the actions it returns.

Plain frozen values, so that the core (`manager.supervisor`) stays pure and its tests can
write events by hand and compare actions with `==`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from webgarden.config.model import PoolConfig


@dataclass(frozen=True)
class Policy:
    """What the supervisor needs of a pool's configuration."""

    max_processes: int = 1
    always_running: bool = True
    overlap: bool = True
    rapid_fail: bool = True
    max_crashes: int = 5
    interval: float = 300.0
    log_idle: bool = True
    idle_timeout: float = 0.0

    @classmethod
    def of(cls, config: PoolConfig) -> Policy:
        failure = config.failure
        return cls(
            max_processes=config.max_processes,
            always_running=config.start_mode == "AlwaysRunning",
            overlap=not config.recycling.disallow_overlapping_rotation,
            rapid_fail=failure.rapid_fail_protection,
            max_crashes=failure.rapid_fail_protection_max_crashes,
            interval=failure.rapid_fail_protection_interval,
            log_idle="IdleTimeout" in config.log_event_on_process_model,
            idle_timeout=config.idle_timeout,
        )


# -- events (in) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    waiting: bool = False  # requests already wait in the queue


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Stopped:
    pass


@dataclass(frozen=True)
class Demand:
    pass


@dataclass(frozen=True)
class Spawned:
    wid: int
    pid: int


@dataclass(frozen=True)
class Ready:
    wid: int


@dataclass(frozen=True)
class Exited:
    wid: int
    code: int | None
    load_error: str | None = None


@dataclass(frozen=True)
class TimerFired:
    name: Literal["respawn"] = "respawn"


@dataclass(frozen=True)
class RecycleRequested:
    reason: str
    wids: tuple[int, ...] | None = None  # None: every worker


@dataclass(frozen=True)
class ConfigApplied:
    """A new configuration for the pool; `recycle`: its workers are replaced (ConfigChange)."""

    policy: Policy
    recycle: bool = False


@dataclass(frozen=True)
class FailureCounted:
    """The worker failed a health rule (ping, startup limit): the supervisor gives up."""

    wid: int
    what: str


@dataclass(frozen=True)
class Orphaned:
    wid: int


@dataclass(frozen=True)
class IdleExpired:
    wid: int


Event = (Start | Stop | Stopped | Demand | Spawned | Ready | Exited | TimerFired
         | RecycleRequested | ConfigApplied | FailureCounted | Orphaned | IdleExpired)


# -- actions (out) -------------------------------------------------------------------


@dataclass(frozen=True)
class Spawn:
    wid: int


@dataclass(frozen=True)
class Serve:
    """The worker is ready and in service: give it requests, arm its per-worker triggers."""

    wid: int


@dataclass(frozen=True)
class Drain:
    wid: int


@dataclass(frozen=True)
class RespawnIn:
    seconds: float


@dataclass(frozen=True)
class CancelRespawn:
    pass


@dataclass(frozen=True)
class StopPool:
    """Rapid-fail: take the pool offline (its queue answers 503) and stop it."""

    reason: Literal["RapidFail"] = "RapidFail"


@dataclass(frozen=True)
class GoOnline:
    pass


@dataclass(frozen=True)
class PoolStarted:
    pass


@dataclass(frozen=True)
class StartFailed:
    error: str


@dataclass(frozen=True)
class AllExited:
    pass


@dataclass(frozen=True)
class RenewTemplate:
    pass


@dataclass(frozen=True)
class WarmTemplate:
    pass


@dataclass(frozen=True)
class Emit:
    event: str
    fields: dict[str, object] = field(default_factory=dict)


Action = (Spawn | Serve | Drain | RespawnIn | CancelRespawn | StopPool | GoOnline | PoolStarted
          | StartFailed | AllExited | RenewTemplate | WarmTemplate | Emit)

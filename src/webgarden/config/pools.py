"""Application pools: `<applicationPools><add>` and its children, IIS 10's schema.

Every attribute IIS 10 defines is read and kept, with IIS's default and range, even where
webgarden does not act on it yet (Windows-only ones such as `managedRuntimeVersion` or
`smpProcessorAffinityMask` are kept so an IIS file loads unchanged). `<processModel>`'s
attributes are fields of PoolConfig itself; `<recycling>`, `<failure>` and `<cpu>` are
nested objects. webgarden's own attributes (`threads`, `prefetch`, `pythonPath`,
`spawnMethod`, `executionTimeout`) are marked `extension=True`.
"""

# setting(), child() and collection() return dataclasses.field(), as field() itself does:
# ruff: noqa: RUF009

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from webgarden.config.schema import child, collection, setting
from webgarden.config.values import (
    INT_MAX,
    UINT_MAX,
    Bool,
    Choice,
    Flags,
    Integer,
    PathList,
    Text,
    TimeSpan,
    non_empty,
    pool_name,
)

DEFAULT_POOL = "DefaultAppPool"
#: Requests an ASGI worker runs at once (asgiConcurrency): as many as wrk's and a browser
#: farm's usual 100 connections, while the pool's queue, not the worker, holds the rest.
ASGI_CONCURRENCY = 100

RECYCLE_REASONS = ("Time", "Requests", "Schedule", "Memory", "IsapiUnhealthy", "OnDemand",
                   "ConfigChange", "PrivateMemory")

IdentityType = Literal["LocalSystem", "LocalService", "NetworkService", "SpecificUser",
                       "ApplicationPoolIdentity"]
StartMode = Literal["OnDemand", "AlwaysRunning"]
PipelineMode = Literal["Integrated", "Classic"]
SpawnMethod = Literal["smart", "direct"]
LogonType = Literal["LogonBatch", "LogonService"]
IdleTimeoutAction = Literal["Terminate", "Suspend"]
LoadBalancerCapabilities = Literal["TcpLevel", "HttpLevel"]
CpuAction = Literal["NoAction", "KillW3wp", "Throttle", "ThrottleUnderLoad"]
NumaNodeAssignment = Literal["MostAvailableMemory", "WindowsScheduling"]
NumaNodeAffinityMode = Literal["Soft", "Hard"]

_HOURS_29 = 29 * 3600.0  # periodicRestart/@time: "29:00:00", IIS 6's 1740 minutes


@dataclass(frozen=True, slots=True)
class ScheduledTime:
    """`<schedule><add value="03:00:00"/>`: a time of day to recycle at."""

    value: float = setting("value", TimeSpan(0, 86399, 60), required=True,
                           help="Local time of day, hh:mm:ss, in whole minutes.")


@dataclass(frozen=True, slots=True)
class PeriodicRestartConfig:
    """`<recycling><periodicRestart>`: recycle a worker by age, requests, memory, schedule."""

    time: float = setting("time", TimeSpan(0, 25920000, 60), _HOURS_29,
                          help="Recycle a worker this long after it started; 0 disables.")
    requests: int = setting("requests", Integer(), 0,
                            help="Recycle after this many requests; 0 disables.")
    memory: int = setting("memory", Integer(), 0,
                          help="Recycle above this virtual memory, KB; 0 disables.")
    private_memory: int = setting("privateMemory", Integer(), 0,
                                  help="Recycle above this private memory, KB; 0 disables.")
    schedule: tuple[float, ...] = collection(
        "add", ScheduledTime, wrapper="schedule", key=("value",), clear=True, scalar="value",
        noun="scheduled time", help="Times of day to recycle at (seconds after midnight).")


@dataclass(frozen=True, slots=True)
class RecyclingConfig:
    """`<recycling>`."""

    disallow_overlapping_rotation: bool = setting(
        "disallowOverlappingRotation", Bool(), False,
        help="Stop the old worker before starting its replacement (no overlap).")
    disallow_rotation_on_config_change: bool = setting(
        "disallowRotationOnConfigChange", Bool(), False,
        help="Do not recycle the pool's workers when its configuration changes.")
    log_event_on_recycle: frozenset[str] = setting(
        "logEventOnRecycle", Flags(*RECYCLE_REASONS), frozenset(RECYCLE_REASONS),
        help="Recycle reasons that write an event (IIS 10: all of them).")
    periodic_restart: PeriodicRestartConfig = child(
        "periodicRestart", PeriodicRestartConfig, help="When to recycle.")


@dataclass(frozen=True, slots=True)
class FailureConfig:
    """`<failure>`: rapid-fail protection, orphaning, what clients see when a pool is down."""

    load_balancer_capabilities: LoadBalancerCapabilities = setting(
        "loadBalancerCapabilities", Choice("TcpLevel", "HttpLevel"), "HttpLevel",
        help="A pool that cannot serve: HttpLevel answers 503, TcpLevel resets the connection.")
    orphan_worker_process: bool = setting(
        "orphanWorkerProcess", Bool(), False,
        help="Leave a failing worker running (orphaned) instead of killing it.")
    orphan_action_exe: str = setting("orphanActionExe", Text(), "",
                                     help="Program run when a worker is orphaned.")
    orphan_action_params: str = setting("orphanActionParams", Text(), "",
                                        help="Its arguments; %1% is the worker's process id.")
    rapid_fail_protection: bool = setting(
        "rapidFailProtection", Bool(), True,
        help="Stop the pool after rapidFailProtectionMaxCrashes within the interval.")
    rapid_fail_protection_interval: float = setting(
        "rapidFailProtectionInterval", TimeSpan(60, 8640000, 60), 300.0,
        help="The window in which worker failures are counted.")
    rapid_fail_protection_max_crashes: int = setting(
        "rapidFailProtectionMaxCrashes", Integer(1, INT_MAX), 5,
        help="Failures within the window that stop the pool.")
    auto_shutdown_exe: str = setting("autoShutdownExe", Text(), "",
                                     help="Program run when the pool is stopped for failures.")
    auto_shutdown_params: str = setting("autoShutdownParams", Text(), "",
                                        help="Its arguments.")


@dataclass(frozen=True, slots=True)
class CpuConfig:
    """`<cpu>`: CPU accounting and affinity."""

    limit: int = setting("limit", Integer(0, 100000), 0,
                         help="CPU limit in 1/1000 of a percent per resetInterval; 0 disables.")
    action: CpuAction = setting(
        "action", Choice("NoAction", "KillW3wp", "Throttle", "ThrottleUnderLoad"), "NoAction",
        help="What happens above the limit (NoAction: an event only).")
    reset_interval: float = setting("resetInterval", TimeSpan(0, 86400, 60), 300.0,
                                    help="The CPU accounting period.")
    smp_affinitized: bool = setting("smpAffinitized", Bool(), False,
                                    help="Pin workers to the processors of the masks.")
    smp_processor_affinity_mask: int = setting(
        "smpProcessorAffinityMask", Integer(1, UINT_MAX), UINT_MAX,
        help="Processors 0-31 workers may run on (not 0).")
    smp_processor_affinity_mask2: int = setting(
        "smpProcessorAffinityMask2", Integer(), UINT_MAX, help="Processors 32-63.")
    processor_group: int = setting("processorGroup", Integer(0, INT_MAX), 0,
                                   help="Windows processor group.")
    numa_node_assignment: NumaNodeAssignment = setting(
        "numaNodeAssignment", Choice("MostAvailableMemory", "WindowsScheduling"),
        "MostAvailableMemory", help="How a worker's NUMA node is chosen.")
    numa_node_affinity_mode: NumaNodeAffinityMode = setting(
        "numaNodeAffinityMode", Choice("Soft", "Hard"), "Soft",
        help="Whether a worker may leave its NUMA node.")


@dataclass(frozen=True, slots=True)
class EnvironmentVariable:
    """`<environmentVariables><add name= value=/>` (IIS 10)."""

    name: str = setting("name", Text(non_empty), required=True, help="Variable name.")
    value: str = setting("value", Text(non_empty), required=True, help="Its value.")


_PM = "processModel"


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """One application pool (`<applicationPools><add>`)."""

    name: str = setting("name", Text(pool_name), DEFAULT_POOL, required=True,
                        help="The pool's name, which applications refer to.")
    queue_length: int = setting(
        "queueLength", Integer(10, 65535), 1000,
        help="Requests held for the pool before HTTP.sys answers 503 (QueueFull).")
    max_processes: int = setting(
        "maxProcesses", Integer(0, INT_MAX, zero_means=1), 1, element=_PM,
        help="Worker processes; more than 1 is a web garden. 0 means one per NUMA node: "
             "webgarden counts the machine as one node.")
    threads: int = setting("threads", Integer(1, 1024), 8, extension=True,
                           help="webgarden: requests one worker runs at once (its threads).")
    asgi_concurrency: int = setting(
        "asgiConcurrency", Integer(1, 65535), ASGI_CONCURRENCY, extension=True,
        help="webgarden: requests one worker runs at once on its event loop for its ASGI "
             "applications (the ASGI counterpart of threads; the capacity it announces).")
    prefetch: int | None = setting(
        "prefetch", Integer(0, 65535), None, extension=True,
        help="webgarden: requests a worker holds beyond its threads (default 3 x threads).")
    execution_timeout: float = setting(
        "executionTimeout", TimeSpan(0, 4294967), 0.0, extension=True,
        help="webgarden: a request running longer gets 504 from the listener, and its "
             "worker is recycled after its stacks are logged (ASP.NET's executionTimeout); "
             "0 (the default) sets no limit.")
    spawn_method: SpawnMethod = setting(
        "spawnMethod", Choice("smart", "direct"), "smart", extension=True,
        help="webgarden: smart forks workers from a template process that has imported the "
             "applications (ready in milliseconds; the template is re-created after every "
             "recycle, and one whose module files changed is never forked from); direct "
             "starts every worker as a new interpreter that imports them itself.")
    startup_time_limit: float = setting(
        "startupTimeLimit", TimeSpan(1, 4294967), 90.0, element=_PM,
        help="A worker not ready by then is killed and counts as a rapid failure.")
    shutdown_time_limit: float = setting(
        "shutdownTimeLimit", TimeSpan(1, 4294967), 90.0, element=_PM,
        help="A stopping worker still running after this is killed (event 5013).")
    python_path: tuple[str, ...] = setting(
        "pythonPath", PathList(), (), extension=True,
        help="webgarden: directories added to the workers' sys.path, separated by ; or :, "
             "relative to the configuration file's directory.")

    auto_start: bool = setting("autoStart", Bool(), True,
                               help="Start the pool when the server starts.")
    start_mode: StartMode = setting(
        "startMode", Choice("OnDemand", "AlwaysRunning"), "OnDemand",
        help="AlwaysRunning starts a worker at once; OnDemand at the first request.")
    enable_32bit_app_on_win64: bool = setting("enable32BitAppOnWin64", Bool(), False,
                                              help="Windows only: 32-bit workers.")
    managed_runtime_version: str = setting("managedRuntimeVersion", Text(), "",
                                           help="Windows only: the .NET CLR version.")
    managed_runtime_loader: str = setting("managedRuntimeLoader", Text(), "webengine4.dll",
                                          help="Windows only: the CLR loader.")
    enable_configuration_override: bool = setting(
        "enableConfigurationOverride", Bool(), True,
        help="Windows only: allow configuration in the pool's web.config files.")
    managed_pipeline_mode: PipelineMode = setting(
        "managedPipelineMode", Choice("Integrated", "Classic"), "Integrated",
        help="Windows only: ASP.NET pipeline mode.")
    clr_config_file: str = setting("CLRConfigFile", Text(), "",
                                   help="Windows only: the CLR's configuration file.")
    pass_anonymous_token: bool = setting("passAnonymousToken", Bool(), True,
                                         help="Windows only: pass the anonymous user token.")

    identity_type: IdentityType = setting(
        "identityType", Choice("LocalSystem", "LocalService", "NetworkService", "SpecificUser",
                               "ApplicationPoolIdentity"),
        "ApplicationPoolIdentity", element=_PM, help="The account workers run as.")
    user_name: str = setting("userName", Text(), "", element=_PM,
                             help="The account, when identityType is SpecificUser.")
    password: str = setting("password", Text(), "", element=_PM, secret=True,
                            help="Its password (IIS stores it encrypted; default empty).")
    load_user_profile: bool = setting("loadUserProfile", Bool(), False, element=_PM,
                                      help="Load the account's profile.")
    set_profile_environment: bool = setting("setProfileEnvironment", Bool(), True,
                                            element=_PM, help="Set the profile's variables.")
    logon_type: LogonType = setting("logonType", Choice("LogonBatch", "LogonService"),
                                    "LogonBatch", element=_PM, help="Windows logon type.")
    manual_group_membership: bool = setting(
        "manualGroupMembership", Bool(), False, element=_PM,
        help="Windows only: add IIS_IUSRS to the worker token by hand.")
    idle_timeout: float = setting(
        "idleTimeout", TimeSpan(0, 2592000, 60), 1200.0, element=_PM,
        help="A worker idle this long is shut down; 0 disables.")
    idle_timeout_action: IdleTimeoutAction = setting(
        "idleTimeoutAction", Choice("Terminate", "Suspend"), "Terminate", element=_PM,
        help="What an idle timeout does to the worker.")
    pinging_enabled: bool = setting("pingingEnabled", Bool(), True, element=_PM,
                                    help="Health-check workers with pings.")
    ping_interval: float = setting("pingInterval", TimeSpan(1, 4294967), 30.0, element=_PM,
                                   help="Time between pings.")
    ping_response_time: float = setting(
        "pingResponseTime", TimeSpan(1, 4294967), 90.0, element=_PM,
        help="A worker that does not answer a ping within this is killed.")
    log_event_on_process_model: frozenset[str] = setting(
        "logEventOnProcessModel", Flags("IdleTimeout"), frozenset({"IdleTimeout"}),
        element=_PM, help="Process-model events to write.")
    request_queue_delegator_identity: str = setting(
        "requestQueueDelegatorIdentity", Text(), "", element=_PM,
        help="Windows only: the identity that may delegate requests to the queue.")

    recycling: RecyclingConfig = child("recycling", RecyclingConfig,
                                       help="When and how workers are recycled.")
    failure: FailureConfig = child("failure", FailureConfig,
                                   help="Rapid-fail protection and orphaning.")
    cpu: CpuConfig = child("cpu", CpuConfig, help="CPU limits and affinity.")
    environment_variables: tuple[EnvironmentVariable, ...] = collection(
        "add", EnvironmentVariable, wrapper="environmentVariables", key=("name",), remove=True,
        noun="environment variable", help="Variables set in the workers' environment.")

    @property
    def worker_capacity_bound(self) -> int:
        """The most a worker may announce: threads and prefetch for its WSGI applications
        plus asgiConcurrency for its ASGI ones (the manager cannot tell an "auto" app's
        interface before the worker imports it)."""
        return self.threads + self.worker_prefetch + self.asgi_concurrency

    @property
    def worker_prefetch(self) -> int:
        return 3 * self.threads if self.prefetch is None else self.prefetch

    @property
    def disallow_rotation_on_config_change(self) -> bool:
        """Shortcut for recycling.disallow_rotation_on_config_change."""
        return self.recycling.disallow_rotation_on_config_change

    @property
    def environment(self) -> dict[str, str]:
        return {v.name: v.value for v in self.environment_variables}

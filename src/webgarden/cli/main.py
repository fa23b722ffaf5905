"""The `webgarden` command. The only place that prints for the user and picks exit codes.

Exit codes: 0 done; 1 a check failed, or the reader of the output went away (EPIPE, as
Python exits then); 2 the command could not run as asked (bad arguments, an application
that cannot load, a port in use).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from webgarden import __version__
from webgarden.config.model import Limits, ServerConfig, single_app
from webgarden.config.pools import ASGI_CONCURRENCY
from webgarden.config.sites import Interface, Lifespan

if TYPE_CHECKING:
    from webgarden.server import Server

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
#: The reader of our output went away: 1, as Python's documented recipe exits on EPIPE.
EXIT_BROKEN_PIPE = 1

DEMO_APP = "webgarden.demo:application"
#: `--verbose`, as the workers read it (webgarden.worker.main.VERBOSE_ENV).
VERBOSE_ENV = "WEBGARDEN_VERBOSE"


def _bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port {number} is out of range")
    return host.strip("[]") or "127.0.0.1", number


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be more than 0 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webgarden",
        description="IIS 6.0's architecture for Python web apps: a listener that owns the "
        "port, application pools with a bounded request queue, worker processes.",
    )
    parser.add_argument("--version", action="version", version=f"webgarden {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="serve one WSGI or ASGI application on one pool",
        description="Serve one WSGI or ASGI application: one listener on --bind, one application "
        "pool (DefaultAppPool) with a request queue of --queue-length, --workers worker "
        "processes of --threads threads each. Without APP, serves the demo site.",
    )
    run.add_argument(
        "app", nargs="?", default=DEMO_APP, metavar="APP",
        help="the WSGI or ASGI callable as module:name, imported by the workers from the current "
        f"directory (default: {DEMO_APP}, the demo site)",
    )
    run.add_argument(
        "--bind", type=_bind, default=("127.0.0.1", 8080), metavar="HOST:PORT",
        help="address and port to listen on (default: 127.0.0.1:8080)",
    )
    run.add_argument(
        "--workers", type=_positive, default=1, metavar="N",
        help="worker processes in the pool; more than 1 is a web garden (IIS maxProcesses, "
        "default: 1)",
    )
    run.add_argument(
        "--threads", type=_positive, default=8, metavar="N",
        help="requests each worker runs at once, one per thread; the listener never sends "
        "a worker more (default: 8)",
    )
    run.add_argument(
        "--prefetch", type=int, default=None, metavar="N",
        help="requests a worker may hold beyond its running threads, so that listener and "
        "worker batch their messages; 0 sends a worker only what its threads can start at "
        "once (default: 3 x --threads)",
    )
    run.add_argument(
        "--interface", choices=("auto", "asgi", "wsgi"), default="auto",
        help="how to call APP: asgi (async, scope/receive/send: FastAPI, Starlette, Django's "
        "asgi.py), wsgi (environ/start_response: Flask, Django's wsgi.py), or auto: told "
        "from the callable (default: auto)",
    )
    run.add_argument(
        "--lifespan", choices=("auto", "on", "off"), default="auto",
        help="ASGI lifespan startup and shutdown, in each worker: on requires the app to "
        "support them, auto uses them if it does, off never sends them (default: auto)",
    )
    run.add_argument(
        "--asgi-concurrency", type=_positive, default=ASGI_CONCURRENCY, metavar="N",
        help="requests each worker runs at once on its event loop for an ASGI app (the "
        f"ASGI counterpart of --threads; default: {ASGI_CONCURRENCY})",
    )
    run.add_argument(
        "--log-dir", default=None, metavar="DIR",
        help="where the W3C access log (DIR/W3SVC1/u_exYYMMDD.log) and the HTTPERR log go "
        "(default: /var/log/webgarden as root, else ~/.local/state/webgarden/logs)",
    )
    run.add_argument(
        "--spawn-method", choices=("smart", "direct"), default="smart",
        help="smart: fork workers from a template process that has imported the app, ready "
        "in milliseconds (the template is renewed on every recycle); direct: start each "
        "worker as a new interpreter (default: smart)",
    )
    run.add_argument(
        "--queue-length", type=_positive, default=1000, metavar="N",
        help="requests the pool's queue holds while every worker is busy or restarting; "
        "beyond it, 503 Service Unavailable (IIS queueLength, default: 1000)",
    )
    run.add_argument(
        "--connection-timeout", type=_seconds, default=120.0, metavar="SECONDS",
        help="close a keep-alive connection idle this long, or a request body that stalls "
        "this long (IIS connectionTimeout, default: 120)",
    )
    run.add_argument(
        "--header-wait-timeout", type=_seconds, default=120.0, metavar="SECONDS",
        help="close a connection whose request head takes longer than this to arrive "
        "(IIS headerWaitTimeout, default: 120)",
    )
    run.add_argument(
        "--shutdown-time-limit", type=_seconds, default=90.0, metavar="SECONDS",
        help="on SIGTERM or SIGINT, wait this long for in-flight and queued requests, then "
        "stop the workers (IIS shutdownTimeLimit, default: 90)",
    )
    run.add_argument(
        "--identity", metavar="USER", default=None,
        help="the Unix user the workers run as (IIS identityType SpecificUser); "
        "'LocalSystem' keeps the server's own user, root included. Default: the server's "
        "user, or 'nobody' when the server runs as root: workers never run as root unless "
        "asked",
    )
    run.add_argument(
        "--rapid-fail-max-crashes", type=int, default=5, metavar="N",
        help="stop the pool (503 until `webgarden start apppool`) after N worker crashes or "
        "health failures within 5 minutes; 0 turns this off (IIS "
        "rapidFailProtectionMaxCrashes, default: 5)",
    )
    run.add_argument(
        "--control", metavar="PATH", default=None,
        help="the control socket for `webgarden list/recycle/stop/start` (default: "
        "$WEBGARDEN_CONTROL, else port-PORT.sock in the runtime directory: "
        "$WEBGARDEN_RUNTIME_DIR, else /run/webgarden as root, else "
        "$XDG_RUNTIME_DIR/webgarden; so servers on different ports each have their own)",
    )
    run.add_argument(
        "--event-log", metavar="PATH", default=None,
        help="append the event log (JSON lines: worker start, ready, exit, ...) to PATH "
        "(default: standard error)",
    )
    serve = commands.add_parser(
        "serve",
        help="serve the sites, applications and pools of an XML configuration",
        description="Serve an applicationHost.config-style XML file: its sites (bindings "
        "IP:port:host), applications (URL path -> pool, Python callable) and application "
        "pools. SIGHUP or a change to the file reloads it: only what changed is restarted, "
        "and a file with errors is refused while the running configuration keeps serving.",
    )
    serve.add_argument("-c", "--config", required=True, metavar="FILE",
                       help="the configuration file (see examples/multisite.config)")
    serve.add_argument(
        "--interface", choices=("auto", "asgi", "wsgi"), default=None,
        help="how to call every application of the file, over its interface= attributes "
        "(default: each application's own, auto unless it says)")
    serve.add_argument(
        "--lifespan", choices=("auto", "on", "off"), default=None,
        help="ASGI lifespan for every application of the file, over its lifespan= "
        "attributes (default: each application's own, auto unless it says)")
    serve.add_argument("--control", metavar="PATH", default=None,
                       help="the control socket (default: $WEBGARDEN_CONTROL, else one per "
                       "configuration file in the runtime directory, as for `run`)")
    for command in (run, serve):
        command.add_argument(
            "--verbose", action="store_true",
            help="an application that fails to import prints its whole traceback (the "
            "one-line reason, with the failing file:line, is always in the event log)")
    serve.add_argument("--event-log", metavar="PATH", default=None,
                       help="append the event log (JSON lines) to PATH (default: standard error)")
    config = commands.add_parser("config", help="work with configuration files")
    config_commands = config.add_subparsers(dest="config_command", metavar="VERB")
    check = config_commands.add_parser(
        "check",
        help="validate a configuration file",
        description="Validate FILE: print every error with its file, line and attribute and "
        "exit 1, or print a summary of its sites, applications and pools and exit 0.",
    )
    check.add_argument("file", metavar="FILE")
    cache = commands.add_parser(
        "cache", help="the listener's response cache: flush it, or show its counters",
        description="Flush the listener's response cache (all sites, or --site NAME), or "
        "show its counters (entries, bytes, hits, misses, stores, evictions).")
    cache.add_argument("action", choices=("flush", "stats"))
    cache.add_argument("--site", default=None, metavar="NAME", help="flush only this site")
    _server_options(cache)
    for verb, text in (("list", "list apppools, wp (worker processes), requests (executing "
                        "and queued) or certs (the TLS certificates in service)"),
                       ("recycle", "recycle an application pool, overlapped"),
                       ("stop", "stop an application pool: its requests get 503"),
                       ("start", "start a stopped application pool")):
        sub = commands.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        if verb == "list":
            sub.add_argument("object", choices=("apppools", "wp", "requests", "certs"))
        else:
            sub.add_argument("object", choices=("apppool",))
            sub.add_argument("name", metavar="NAME")
        _server_options(sub)
    return parser


def _server_options(verb: argparse.ArgumentParser) -> None:
    """How a verb names the server it talks to, and --json."""
    which = verb.add_mutually_exclusive_group()
    which.add_argument("--port", type=int, default=None, metavar="N",
                       help="the server that `webgarden run` started on port N")
    which.add_argument("--config", default=None, metavar="FILE",
                       help="the server that `webgarden serve` started with FILE")
    which.add_argument("--control", metavar="PATH", default=None,
                       help="the server's control socket (default: $WEBGARDEN_CONTROL, else "
                       "the only server listening in the runtime directory)")
    verb.add_argument("--json", action="store_true",
                      help="print the server's answer as JSON (sizes in bytes)")


def cmd_admin(args: argparse.Namespace) -> int:
    import json

    from webgarden.admin.control import ControlError, call, client_path
    from webgarden.cli.output import answer

    if args.command == "cache":
        request = {"verb": args.action, "object": "cache", "name": args.site}
    else:
        request = {"verb": args.command, "object": args.object,
                   "name": getattr(args, "name", None)}
    try:
        result = call(client_path(args.control, args.port, args.config), request)
    except ControlError as exc:
        print(f"webgarden: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(answer(request["verb"], result))
    return EXIT_OK


def _serve(
    config: ServerConfig, config_path: str | None, control: str,
    banner: Callable[[Server], str],
    adjust: Callable[[ServerConfig], ServerConfig] | None = None,
) -> int:
    import uvloop

    from webgarden.server import Server, StartupError

    async def serve() -> int:
        try:
            server = Server(config, config_path, control, adjust)
            await server.start()
        except StartupError as exc:
            print(f"webgarden: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(banner(server), file=sys.stderr, flush=True)
        return await server.run_started()

    return uvloop.run(serve())


def cmd_serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from webgarden.config.loader import ConfigError, load

    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"webgarden: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.event_log:
        config = replace(config, event_log=args.event_log)
    adjust = _app_overrides(args.interface, args.lifespan)
    if adjust is not None:
        config = adjust(config)

    def banner(server: Server) -> str:
        addresses = ", ".join(server.listener.urls())
        return (
            f"webgarden {__version__}: serving {args.config}: {len(config.sites)} site(s), "
            f"{len(config.pools)} pool(s) on {addresses}; SIGHUP reloads, Ctrl-C stops"
        )

    from webgarden.admin.control import config_path, server_path

    control = server_path(config_path(args.config), args.control)
    return _serve(config, args.config, control, banner, adjust)


def _app_overrides(interface: Interface | None, lifespan: Lifespan | None
                   ) -> Callable[[ServerConfig], ServerConfig] | None:
    """serve --interface / --lifespan: every application of the file, at start and at each
    reload (a file mixing interfaces says interface= per application instead)."""
    if interface is None and lifespan is None:
        return None
    from dataclasses import replace

    def adjust(config: ServerConfig) -> ServerConfig:
        sites = tuple(
            replace(site, applications=tuple(
                replace(app, interface=interface or app.interface,
                        lifespan=lifespan or app.lifespan)
                for app in site.applications))
            for site in config.sites)
        return replace(config, sites=sites)

    return adjust


def cmd_config_check(args: argparse.Namespace) -> int:
    from webgarden.config.loader import check, load
    from webgarden.config.summary import summary

    errors = check(args.file)
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        print(f"{args.file}: {len(errors)} error(s)", file=sys.stderr)
        return EXIT_CHECK_FAILED
    config = load(args.file)
    print(summary(config))
    if config.unsupported:
        print(f"\nAccepted, but not acted on ({len(config.unsupported)}):")
        for use in config.unsupported:
            print(f"  {use}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    host, port = args.bind
    config = single_app(
        args.app,
        host=host,
        port=port,
        workers=args.workers,
        threads=args.threads,
        prefetch=args.prefetch,
        interface=args.interface,
        lifespan=args.lifespan,
        asgi_concurrency=args.asgi_concurrency,
        spawn_method=args.spawn_method,
        log_directory=None if args.log_dir is None else os.path.abspath(args.log_dir),
        queue_length=args.queue_length,
        limits=Limits(
            connection_timeout=args.connection_timeout,
            header_wait_timeout=args.header_wait_timeout,
        ),
        event_log=args.event_log,
        shutdown_time_limit=args.shutdown_time_limit,
        rapid_fail_max_crashes=args.rapid_fail_max_crashes,
        identity=args.identity,
    )
    if args.app != DEMO_APP:
        # The app is imported "from the current directory": the configuration says so by
        # naming it, as the pool's whole import path (never the cwd implicitly).
        from dataclasses import replace

        pool = replace(config.pools[0], python_path=(os.getcwd(),))
        config = replace(config, pools=(pool,))

    def banner(server: Server) -> str:
        host, port = server.listener.addresses()[0]
        return (
            f"webgarden {__version__}: serving {args.app} on http://{host}:{port}/ "
            f"({args.workers} worker(s) x {args.threads} threads, queue {args.queue_length}); "
            "Ctrl-C stops"
        )

    from webgarden.admin.control import port_path, server_path

    return _serve(config, None, server_path(port_path(port), args.control), banner)


def main(argv: list[str] | None = None) -> int:
    """Run one command. A reader that goes away (`webgarden config check FILE | head`) ends
    it quietly, as it ends `cat`: the rest of the output has no one to read it."""
    try:
        code = _command(argv)
        sys.stdout.flush()  # inside the try: a pipe closed early fails here, or at exit
    except BrokenPipeError:
        # Python's recipe (the signal module's "Note on SIGPIPE"): point stdout at devnull
        # so the interpreter's own flush at exit does not fail a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


def _command(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "verbose", False):
        os.environ[VERBOSE_ENV] = "1"  # inherited by every worker and template
    if args.command == "run":
        return cmd_run(args)
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "config" and args.config_command == "check":
        return cmd_config_check(args)
    if args.command in ("list", "recycle", "stop", "start", "cache"):
        return cmd_admin(args)
    parser.print_help()
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

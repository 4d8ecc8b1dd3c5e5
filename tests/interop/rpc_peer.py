"""Python peer for the kaiju-rpc interop test: a real kaiju-tools 2.4.26 / kaiju-redis 2.4.2 app and client.

usage: rpc_peer.py serve <redis-url> <env> <app> <record-file>
           A real kaiju app built the way a production one is: an in-memory YAML config (the one below,
           with `[key]` templates) -> kaiju_tools Template.fill -> ProjectSettings -> init_app, then the
           aiohttp AppRunner start-up (which runs every service's init/post_init; no HTTP site is bound).
           Services: LoggingService (text logs on stderr), Scheduler, RedisTransportService "redis",
           RedisLocksService, JSONRPCServer "rpc", ExtService "ext" (below), RedisListener (topic "rpc",
           scope SYSTEM, default group = <app>, default consumer = str(app.id)). It reads the stream
           `<env>.<app>._stream.rpc`; its group is created at `$`, so write only after `ready`.
           Prints `ready` once the start-up finished (routes registered), the group exists and the
           listener's read loop is running (about 0.5 s after the process starts). Runs until
           SIGTERM/SIGINT or EOF on stdin (spawn it with a piped stdin and keep it open: a null stdin
           stops it right after `ready`), then runs the app's clean-up and exits 0 (about 0.6 s).
           Known start-up race in kaiju (D6): if the listener's read loop creates the group before
           init does, init fails with BUSYGROUP; the app is then rebuilt and started again (max 3).
           Routes of "ext" (all GUEST; the listener is SYSTEM anyway). Each appends one JSON line to
           <record-file> (opened, written, flushed, closed per line):
             ext.record(**params) / ext.echo(**params) -> returns params; line
               {"method": "ext.record"|"ext.echo", "params": {...}, "correlation_id": str,
                "deadline": int (request_deadline of the request context), "now": int(time.time())}
             ext.add(a, b) -> a + b; line
               {"method": "ext.add", "params": {"a": a, "b": b}, "correlation_id": str, "result": a + b,
                "deadline": int, "now": int}
             ext.fail() -> raises kaiju_tools.exceptions.NotFound("no such thing"); line
               {"method": "ext.fail", "params": {}, "correlation_id": str, "deadline": int, "now": int}
           (A missing/None params map calls the route without arguments, so record/echo log `{}`.)

       rpc_peer.py call <redis-url> <env> <target-app> <case> [<prefix>=svc]
           A real RedisStreamRPCClient (built by init_app from a config with RedisTransportService
           "redis" + RedisStreamRPCClient, app name "pyclient", env <env>, started by the AppRunner so
           its init() resolves the transport). Every request goes through the client's own
           call/call_multiple with `app=<target-app>`, i.e. to `<env>.<target-app>._stream.rpc`
           (the client's env). Prints `sent`. Methods are `<prefix>.echo|add|fail` (default prefix
           `svc`; with `ext` they hit the `serve` mode above). Entry on the wire = msgpack of
           (body, headers); there is never an id, and headers are in exactly this order:
             single:   body ["<p>.echo", {"value": 1, "text": "héllo"}]
                       headers {"Correlation-Id": "py-corr-1", "Timeout": 7, "RPC-Retries": 2}
                       (call(..., max_timeout=7, retries=2, headers={"Correlation-Id": "py-corr-1"}))
             batch:    body [["<p>.add", {"a": 1, "b": 2}], ["<p>.add", {"a": 3, "b": 4}]]
                       headers {"Correlation-Id": <10 random lowercase hex chars>}
             template: body [["<p>.add", {"a": 1, "b": 2}], ["<p>.add", {"a": "[0]", "b": 10}]]
                       headers {"Correlation-Id": <10 hex>, "RPC-Batch-Template": "?1"}
             abort:    body [["<p>.fail", {}], ["<p>.add", {"a": 1, "b": 1}]]
                       headers {"Correlation-Id": <10 hex>, "RPC-Batch-Abort-Error": "?1"}
             none:     body ["<p>.echo", null]
                       headers {"Correlation-Id": <10 hex>}
             float_timeouts: three calls, body ["<p>.echo", {"t": t}] for t = 0.5, 2.5, 7.0
                       headers {"Correlation-Id": <10 hex>, "Timeout": t} (a msgpack float)
             odd_headers: body ["<p>.echo", {"value": 2}]
                       headers {"Correlation-Id": "py-odd", 7: "v", "X-Big": 2**63} (an integer
                       name, and a value above i64::MAX: Python kaiju runs such a call)
             expired:  two calls whose deadline passed 30 s ago, D = int(time.time()) - 30,
                       printed first as `deadline <D>`:
                       body ["<p>.echo", {"value": 3}], then ["<p>.nope", {"value": 4}]
                       headers {"Correlation-Id": "py-expired", "Deadline": D} (a msgpack int)
           (No request context exists in this process, so the client generates the Correlation-Id
           with get_short_uid(); Timeout and RPC-Retries are msgpack ints; no Deadline is ever sent
           because stream calls are forced to nowait.)

       rpc_peer.py rebuild <json> [--data]
           Runs the real client's error rebuilding (BaseRPCClient._create_exception, rpc.py:1002-1013,
           on a real RedisStreamRPCClient instance) and prints `<ExceptionClassName> <status_code> <message>`.
           <json> is either an error object {"code", "message", "data": {...}} -> _create_exception(obj),
           or a whole response {"id": .., "error": {...}} -> _process_response(obj) (rpc.py:996-1000),
           which calls _create_exception(obj["error"]). A response with "result" prints `result <json>`.
           Class choice: data.type if present (even when unknown!), else data.base_type; a name not in
           ERROR_CLASSES gives RPCClientError. An error without "data" raises KeyError (exit 1).
           With --data, a second line: `data <json of the exception's data, keys sorted>`.

       rpc_peer.py dump <redis-url> <stream>
           One JSON line per stream entry (XRANGE order): {"body": ..., "headers": ...}, decoded from the
           `_` field with kaiju_tools.encoding.msgpack_loads.
"""

import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
from urllib.parse import unquote, urlparse

from aiohttp.web import AppRunner

import coredis
from kaiju_tools.app import SERVICE_CLASS_REGISTRY, ContextableService, ProjectSettings, init_app
from kaiju_tools.encoding import msgpack_loads, yaml_loads
from kaiju_tools.exceptions import NotFound
from kaiju_tools.interfaces import PublicInterface
from kaiju_tools.templates import Template

# What a project's settings/config.yml would hold; values come from the env map (`[key]` templates).
SERVER_CONFIG = """
packages: [kaiju_tools, kaiju_redis]
app: {debug: false}
run: {}
main:
  name: "[main_name]"
  version: '[main_version:"1.0.0"]'
  env: "[main_env]"
  loglevel: "[main_loglevel:INFO]"
etc: {}
services:
  - cls: LoggingService
    settings:
      loggers: [{name: "[main_name]", handlers: true}]
      handlers: [{cls: TextHandler, name: default, settings: {stream: stderr}}]
  - Scheduler
  - cls: RedisTransportService
    name: redis
    settings: {host: "[redis_host]", port: "[redis_port]", db: "[redis_db:0]", password: "[redis_password:None]"}
  - cls: RedisLocksService
    settings: {transport: redis}
  - cls: JSONRPCServer
  - cls: ExtService
    name: ext
    settings: {record_file: "[record_file]"}
  - cls: RedisListener
    settings: {transport: redis, topic: rpc, scope: SYSTEM}
"""

CLIENT_CONFIG = """
packages: [kaiju_tools, kaiju_redis]
app: {debug: false}
run: {}
main:
  name: "[main_name]"
  version: '[main_version:"1.0.0"]'
  env: "[main_env]"
  loglevel: "[main_loglevel:INFO]"
etc: {}
services:
  - cls: RedisTransportService
    name: redis
    settings: {host: "[redis_host]", port: "[redis_port]", db: "[redis_db:0]", password: "[redis_password:None]"}
  - cls: RedisStreamRPCClient
    settings: {transport: redis}
"""


class ExtService(ContextableService, PublicInterface):
    """The `ext` service of the test app: records every call in a JSON-lines file."""

    service_name = "ext"

    def __init__(self, app, record_file: str, logger=None):
        super().__init__(app=app, logger=logger)
        self.record_file = record_file

    @property
    def routes(self) -> dict:
        return {"record": self.record, "echo": self.echo, "add": self.add, "fail": self.fail}

    @property
    def permissions(self) -> dict:
        return {"*": self.PermissionKeys.GLOBAL_GUEST_PERMISSION}

    def _record(self, method: str, params: dict, **extra) -> None:
        ctx = self.get_request_context() or {}
        line = {
            "method": method,
            "params": params,
            "correlation_id": ctx.get("correlation_id"),
            "deadline": ctx.get("request_deadline"),
            "now": int(time.time()),
            **extra,
        }
        with open(self.record_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()

    async def record(self, **params):
        self._record("ext.record", params)
        return params

    async def echo(self, **params):
        self._record("ext.echo", params)
        return params

    async def add(self, a, b):
        self._record("ext.add", {"a": a, "b": b}, result=a + b)
        return a + b

    async def fail(self):
        self._record("ext.fail", {})
        raise NotFound("no such thing")


SERVICE_CLASS_REGISTRY.register(ExtService)


def redis_env(url: str) -> dict:
    """Template values for the transport settings from a redis:// URL."""
    parsed = urlparse(url)
    env = {"redis_host": parsed.hostname or "localhost", "redis_port": parsed.port or 6379}
    db = parsed.path.strip("/")
    if db:
        env["redis_db"] = int(db)
    if parsed.password:
        env["redis_password"] = unquote(parsed.password)
    return env


def make_app(config: str, env: dict):
    """YAML text + env map -> ProjectSettings -> init_app, as kaiju's ConfigLoader/run_server do."""
    settings = Template(yaml_loads(config)).fill(env)
    return init_app(ProjectSettings(**settings))


async def start_server_app(url: str, env: str, name: str, record_file: str):
    """init_app + aiohttp start-up. kaiju's listener races itself creating the group (its read loop
    starts before init's XGROUP CREATE, D6): if the read loop wins, init gets BUSYGROUP and the start-up
    fails. Then the group exists, so a second start-up cannot race; retry (as a supervisor would)."""
    for attempt in range(3):
        app = make_app(
            SERVER_CONFIG, {"main_name": name, "main_env": env, "record_file": record_file, **redis_env(url)}
        )
        runner = AppRunner(app, handle_signals=False, access_log=None)
        try:
            await runner.setup()  # aiohttp start-up: ServiceContextManager init (config order) + post_init
        except Exception as exc:
            print(f"start-up attempt {attempt + 1} failed: {exc!r}", file=sys.stderr)
            await runner.cleanup()
            listener = app.services["RedisListener"]  # its init failed, so clean-up skipped it, but
            listener._closing = True  # its read loop was already started: stop that orphan reader
            if listener._loop:
                listener._loop.cancel()
            continue
        return app, runner
    raise RuntimeError("the kaiju app did not start")


async def serve(url: str, env: str, name: str, record_file: str) -> int:
    t0 = time.monotonic()
    app, runner = await start_server_app(url, env, name, record_file)
    listener = app.services["RedisListener"]
    transport = app.services["redis"]
    group = listener.group_id.encode()
    # Reading = routes registered (post_init done), the group exists (created at `$`: every entry
    # added from now on is delivered to the next XREADGROUP >) and the read loop is alive.
    # (Redis 7.0 does not list a consumer in XINFO CONSUMERS until something was delivered to it.)
    while True:
        try:
            groups = await transport.xinfo_groups(listener._key)
        except coredis.exceptions.ResponseError:
            groups = ()
        if any(g.get(b"name") == group for g in groups) and not listener._loop.done():
            break
        if time.monotonic() - t0 > 30:
            print("listener did not start reading", file=sys.stderr)
            await runner.cleanup()
            return 1
        await asyncio.sleep(0.05)
    print(f"listener reading after {time.monotonic() - t0:.2f}s", file=sys.stderr)
    print("ready", flush=True)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def wait_stdin_eof():  # raw fd reads: a daemon thread inside sys.stdin.buffer aborts the exit
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_stdin_eof, daemon=True).start()
    await stop.wait()
    await runner.cleanup()  # aiohttp clean-up: services closed in reverse order
    await asyncio.sleep(max(0.0, listener.max_wait_time_ms / 1000))  # let the read loop see _closing
    return 0


async def call(url: str, env: str, target: str, case: str, prefix: str) -> int:
    app = make_app(CLIENT_CONFIG, {"main_name": "pyclient", "main_env": env, **redis_env(url)})
    runner = AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()  # runs RedisStreamRPCClient.init(): discovers the transport
    client = app.services["RedisStreamRPCClient"]
    try:
        if case == "single":
            await client.call(
                f"{prefix}.echo",
                {"value": 1, "text": "héllo"},
                max_timeout=7,
                retries=2,
                headers={"Correlation-Id": "py-corr-1"},
                app=target,
            )
        elif case == "batch":
            await client.call_multiple(
                [
                    {"method": f"{prefix}.add", "params": {"a": 1, "b": 2}},
                    {"method": f"{prefix}.add", "params": {"a": 3, "b": 4}},
                ],
                app=target,
            )
        elif case == "template":
            await client.call_multiple(
                [
                    {"method": f"{prefix}.add", "params": {"a": 1, "b": 2}},
                    {"method": f"{prefix}.add", "params": {"a": "[0]", "b": 10}},
                ],
                use_template=True,
                app=target,
            )
        elif case == "abort":
            await client.call_multiple(
                [
                    {"method": f"{prefix}.fail", "params": {}},
                    {"method": f"{prefix}.add", "params": {"a": 1, "b": 1}},
                ],
                abort_on_error=True,
                app=target,
            )
        elif case == "none":
            await client.call(f"{prefix}.echo", None, app=target)
        elif case == "float_timeouts":
            for t in (0.5, 2.5, 7.0):
                await client.call(f"{prefix}.echo", {"t": t}, max_timeout=t, app=target)
        elif case == "odd_headers":
            await client.call(
                f"{prefix}.echo",
                {"value": 2},
                headers={"Correlation-Id": "py-odd", 7: "v", "X-Big": 2**63},
                app=target,
            )
        elif case == "expired":
            deadline = int(time.time()) - 30
            print(f"deadline {deadline}", flush=True)
            for method, value in ((f"{prefix}.echo", 3), (f"{prefix}.nope", 4)):
                await client.call(
                    method,
                    {"value": value},
                    headers={"Correlation-Id": "py-expired", "Deadline": deadline},
                    app=target,
                )
        else:
            print(f"unknown case {case!r}", file=sys.stderr)
            return 2
    finally:
        await runner.cleanup()
    print("sent", flush=True)
    return 0


def rebuild(text: str, data: bool = False) -> int:
    obj = json.loads(text)
    app = make_app(CLIENT_CONFIG, {"main_name": "pyclient", "main_env": "rebuild", "redis_host": "localhost", "redis_port": 6379})
    client = app.services["RedisStreamRPCClient"]  # constructed only: nothing connects
    if "error" in obj or "result" in obj:
        exc = client._process_response(obj)
    else:
        exc = client._create_exception(obj)
    if isinstance(exc, Exception):
        print(f"{type(exc).__name__} {exc.status_code} {exc.message}")
        if data:
            print(f"data {json.dumps(exc.data, sort_keys=True)}")
    else:
        print(f"result {json.dumps(exc)}")
    return 0


async def dump(url: str, stream: str) -> int:
    parsed = urlparse(url)
    redis = coredis.Redis(
        host=parsed.hostname or "localhost",
        port=parsed.port or 6379,
        db=int(parsed.path.strip("/") or 0),
        password=unquote(parsed.password) if parsed.password else None,
    )
    for _id, fields in await redis.xrange(stream):
        body, headers = msgpack_loads(fields[b"_"])
        print(json.dumps({"body": body, "headers": headers}), flush=True)
    return 0


def main() -> int:
    args = sys.argv[1:]
    mode = args[0] if args else ""
    if mode == "serve" and len(args) == 5:
        return asyncio.run(serve(*args[1:5]))
    if mode == "call" and len(args) in (5, 6):
        prefix = args[5] if len(args) == 6 else "svc"
        return asyncio.run(call(*args[1:5], prefix))
    if mode == "rebuild" and len(args) == 2:
        return rebuild(args[1])
    if mode == "rebuild" and len(args) == 3 and args[2] == "--data":
        return rebuild(args[1], data=True)
    if mode == "dump" and len(args) == 3:
        return asyncio.run(dump(*args[1:3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.exit(main())

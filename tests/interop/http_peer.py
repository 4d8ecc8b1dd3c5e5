"""Python peer for the HTTP JSON-RPC interop test: a real kaiju-tools 2.4.26 app served over HTTP, and
kaiju-tools' own HTTP JSON-RPC client.

usage: http_peer.py serve <port>
           A kaiju app built as a production one is (YAML -> Template.fill -> ProjectSettings -> init_app,
           whose middlewares are kaiju's error_middleware and session_middleware), with JSONRPCServer
           "rpc", a Scheduler and the `ext` service below, and kaiju's JSONRPCView routed at /public/rpc
           (as kaiju projects route it), served by aiohttp on 127.0.0.1:<port>. No Redis is used.
           Prints `ready` once the site is bound. Runs until SIGTERM/SIGINT or EOF on stdin.
           Routes of "ext": echo(**params) -> params; add(a, b) -> a + b; fail() -> raises
           NotFound("no such thing"); admin() -> "secret" (SYSTEM scope: above GUEST).

       http_peer.py call <base-url> [<authorization>]
           kaiju-tools' RPCClientService over an HTTPService(host=<base-url>), base_uri /public/rpc, with
           auth_str=<authorization> when given. Runs the cases below in order and prints one JSON line per
           case: {"case": name, "result": <json>} or {"case": name, "error": {"class": <exception class
           the client rebuilt>, "code": <status_code>, "message": str, "data": <exception data>}}.
           Batch cases print {"case", "results": [<the same per item>]} (raise_exception=False).
             single      call("ext.echo", {"value": 1, "text": "héllo"}, max_timeout=7, retries=2,
                         headers={"Correlation-Id": "py-http-1"})
             add         call("ext.add", {"a": 2, "b": 3})
             none        call("ext.echo", None)
             fail        call("ext.fail")                        -> NotFound
             unknown     call("ext.nope", {"x": 1})              -> MethodNotFound
             forbidden   call("ext.admin")                       -> MethodNotFound at GUEST
             bad_params  call("ext.add", {"a": 1})               -> InvalidParams
             notify      call("ext.echo", {"n": 1}, nowait=True) -> null
             batch       call_multiple([add 1+2, add 3+4])
             mixed       call_multiple([add 1+1, fail, nope])
             template    call_multiple([add 1+2, add "[0]"+10], use_template=True)
             abort       call_multiple([fail, add 1+1], abort_on_error=True)
"""

import asyncio
import json
import os
import signal
import sys
import threading

from aiohttp.web import AppRunner, TCPSite

from kaiju_tools.app import SERVICE_CLASS_REGISTRY, ContextableService, ProjectSettings, init_app
from kaiju_tools.encoding import yaml_loads
from kaiju_tools.exceptions import NotFound
from kaiju_tools.http import JSONRPCView
from kaiju_tools.interfaces import PublicInterface
from kaiju_tools.templates import Template

SERVER_CONFIG = """
packages: [kaiju_tools]
app: {debug: false}
run: {}
main: {name: pyhttp, version: "1.0.0", env: test, loglevel: WARNING}
etc: {}
services:
  - Scheduler
  - cls: JSONRPCServer
  - cls: HttpExtService
    name: ext
"""

CLIENT_CONFIG = """
packages: [kaiju_tools]
app: {debug: false}
run: {}
main: {name: pyhttpclient, version: "1.0.0", env: test, loglevel: WARNING}
etc: {}
services:
  - cls: HTTPService
    name: http
    settings: {host: "[base_url]"}
  - cls: RPCClientService
    settings: {transport: http, auth_str: "[auth:None]"}
"""


class HttpExtService(ContextableService, PublicInterface):
    """The `ext` service of the HTTP test app."""

    service_name = "ext"

    @property
    def routes(self) -> dict:
        return {"echo": self.echo, "add": self.add, "fail": self.fail, "admin": self.admin}

    @property
    def permissions(self) -> dict:
        return {"*": self.PermissionKeys.GLOBAL_GUEST_PERMISSION, "admin": self.PermissionKeys.GLOBAL_SYSTEM_PERMISSION}

    async def echo(self, **params):
        return params

    async def add(self, a, b):
        return a + b

    async def fail(self):
        raise NotFound("no such thing")

    async def admin(self):
        return "secret"


SERVICE_CLASS_REGISTRY.register(HttpExtService)


def make_app(config: str, env: dict):
    settings = Template(yaml_loads(config)).fill(env)
    return init_app(ProjectSettings(**settings))


async def serve(port: str) -> int:
    app = make_app(SERVER_CONFIG, {})
    app.router.add_route("*", "/public/rpc", JSONRPCView)
    runner = AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = TCPSite(runner, "127.0.0.1", int(port))
    await site.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def wait_stdin_eof():
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_stdin_eof, daemon=True).start()
    await stop.wait()
    await runner.cleanup()
    return 0


def described(exc: Exception) -> dict:
    return {
        "class": type(exc).__name__,
        "code": getattr(exc, "status_code", None),
        "message": getattr(exc, "message", str(exc)),
        "data": getattr(exc, "data", None),
    }


def item(value) -> dict:
    return {"error": described(value)} if isinstance(value, Exception) else {"result": value}


async def call(base_url: str, auth: str | None) -> int:
    env = {"base_url": base_url}
    if auth:
        env["auth"] = auth
    app = make_app(CLIENT_CONFIG, env)
    runner = AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    client = app.services["RPCClientService"]

    def add(a, b):
        return {"method": "ext.add", "params": {"a": a, "b": b}}

    singles = [
        ("single", lambda: client.call("ext.echo", {"value": 1, "text": "héllo"}, max_timeout=7, retries=2,
                                       headers={"Correlation-Id": "py-http-1"})),
        ("add", lambda: client.call("ext.add", {"a": 2, "b": 3})),
        ("none", lambda: client.call("ext.echo", None)),
        ("fail", lambda: client.call("ext.fail")),
        ("unknown", lambda: client.call("ext.nope", {"x": 1})),
        ("forbidden", lambda: client.call("ext.admin")),
        ("bad_params", lambda: client.call("ext.add", {"a": 1})),
        ("notify", lambda: client.call("ext.echo", {"n": 1}, nowait=True)),
    ]
    batches = [
        ("batch", lambda: client.call_multiple([add(1, 2), add(3, 4)], raise_exception=False)),
        ("mixed", lambda: client.call_multiple(
            [add(1, 1), {"method": "ext.fail", "params": {}}, {"method": "ext.nope", "params": {}}],
            raise_exception=False)),
        ("template", lambda: client.call_multiple([add(1, 2), add("[0]", 10)], use_template=True,
                                                  raise_exception=False)),
        ("abort", lambda: client.call_multiple([{"method": "ext.fail", "params": {}}, add(1, 1)],
                                               abort_on_error=True, raise_exception=False)),
    ]
    try:
        for name, run in singles:
            try:
                line = {"case": name, "result": await run()}
            except Exception as exc:  # noqa: BLE001 - the rebuilt exception is what is compared
                line = {"case": name, "error": described(exc)}
            print(json.dumps(line, sort_keys=True, default=repr), flush=True)
        for name, run in batches:
            try:
                results = await run()
                line = {"case": name, "results": None if results is None else [item(r) for r in results]}
            except Exception as exc:  # noqa: BLE001
                line = {"case": name, "error": described(exc)}
            print(json.dumps(line, sort_keys=True, default=repr), flush=True)
    finally:
        await runner.cleanup()
    return 0


def main() -> int:
    args = sys.argv[1:]
    mode = args[0] if args else ""
    if mode == "serve" and len(args) == 2:
        return asyncio.run(serve(args[1]))
    if mode == "call" and len(args) in (2, 3):
        return asyncio.run(call(args[1], args[2] if len(args) == 3 else None))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

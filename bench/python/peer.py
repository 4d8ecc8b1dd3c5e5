"""The Python side of the kaiju-rs benchmarks: the same workloads as bench/src/{streams,locks,cache,rpc}.rs,
run through the original Python library (kaiju-redis 2.4.2 + kaiju-tools 2.4.26 + coredis 5.7).

usage: python peer.py streams|locks|cache|rpc --url redis://127.0.0.1:PORT[/DB]

Prints one JSON object per line on stdout, {"name": key, "value": float, "unit": str}; a figure the
Python library cannot produce is {"name": key, "value": null, "unit": str, "why": str}. Diagnostics
(round figures, timings) go to stderr. Every figure is the median of 3 rounds, as on the Rust side.
Every key this script creates starts with a random env `pybench<hex>` (streams, locks, cache keys);
all of them are deleted at the end (SCAN MATCH <env>.* + DEL). It never flushes the database.

The Python services are built in code as a kaiju app would build them from its config
(`kaiju_tools.app.init_app(ProjectSettings(...))` with a dict, no YAML), started with
`app.services.init()` (every service's init, then post_init) and stopped with `app.services.close()`.
No LoggingService is configured, so kaiju's per-operation INFO logs are disabled (Python's default
WARNING level), which is the cheapest setting for Python.

Common differences from the Rust side
* Message/op counts are smaller than Rust's (Python is slower; each group must finish in < 90 s):
  see each key. Rates are still honest: elapsed wall time of the measured loop only.
* One Python process with one asyncio event loop (one thread, one core) runs the writer and the
  consumer together; the Rust binary runs the same on tokio's multi-threaded runtime (both cores).
* "Pipelined" Python writes = 100 concurrent `RedisStreamRPCClient.write`/`.call` coroutines under
  `asyncio.gather`; coredis multiplexes non-blocking commands on one connection, so the 100 XADDs go
  out back to back without waiting for each reply (what a Python user would write; the client has no
  batch-write API). Rust: `StreamWriter::write_many` of 100 entries (one pipeline).
* The Rust loops poll their "handled" counter every 1 ms; here the handler sets an asyncio future when
  the last message is handled (no polling task competing for the single event loop).

streams (bench/src/streams.rs; Rust: 100,000 messages, here STREAM_MESSAGES = 20,000)
* In Python the e2e figures are bounded by the producer: 100 gathered `write` calls cost more CPU than
  the listener spends on them. stderr also shows, as a diagnostic only, the writer alone (same loop,
  no listener running) so the two can be told apart.
* streams.e2e.10, streams.e2e.100 [msg/s]: a listener with max_batch_size 10 / 100 and
  max_parallel_batches 4 is started on `<env>.e2e<batch>._stream.rpc`; then the clock starts, the writer
  writes 20,000 entries (`RedisStreamRPCClient.write(stream, ["bench.noop", 0], {})`, 100 at a time),
  and the clock stops when the no-op handler has seen the 20,000th. The consumer is `RedisListener`
  itself (its XREADGROUP loop, msgpack decoding of the `_` field, XACK) with only `_process_request`
  (the per-entry hook) overridden by a counting no-op: kaiju-redis has no plain-handler listener, its
  `_process_request` always goes to the JSON-RPC server; the full RPC path is measured in the rpc
  group, as on the Rust side (kaiju-streams `Listener` with a closure vs kaiju-rpc `RpcListener`).
  Differences: the Python listener reads with NOACK (defect D1: the XACK it sends is a no-op), and its
  `max_parallel_batches` has no effect (D21: the batches run one after another in the read loop),
  while kaiju-rs acks after the handler and can run 4 batches at once.
* streams.drain.100 [msg/s]: a backlog of DRAIN_MESSAGES = 50,000 entries (Rust: 100,000) is written
  first (untimed; the exact bytes `RedisStreamRPCClient.write` sends, but queued in coredis pipelines
  of 1,000 to save time); then the clock starts, a listener
  (max_batch_size 100, max_parallel_batches 4) is created and started, and the clock stops when its
  handler has seen all 50,000 (listener start-up is inside the timing, as in Rust). Difference:
  the consumer group is created (at `$`, like the listener would) *before* the backlog is written,
  because the Python listener creates its group at `$` and never delivers older entries (D7); and
  it is created by this script before the listener starts, to avoid the listener's start-up race with
  itself over XGROUP CREATE (D6). This applies to every listener below.
* streams.latency.p50_ms, streams.latency.p99_ms [ms]: one listener (default settings:
  max_batch_size 10, no max_parallel_batches), 3,000 single writes (`write`, not gathered) at a steady
  1,000 msg/s (absolute 1 ms schedule that catches up after a late tick, like tokio's interval), body
  `["bench.noop", <send time in microseconds since the epoch>]`; the handler records now - send time.
  Percentile = sorted[int((n - 1) * q)], as in Rust.

locks (bench/src/locks.rs; 5,000 pairs like Rust: LOCK_PAIRS)
* locks.uncontended.1, locks.uncontended.64 [pairs/s]: `RedisLocksService.acquire(key)` +
  `.release(key, lock_id)` pairs, split over 1 / 64 asyncio tasks, task t always on key
  `<env>.lock.<t>`. A fresh app (Scheduler, RedisTransportService, RedisLocksService) per round,
  started before the clock, like Rust's `Locks::new` before `started`; one warm-up round with 8 tasks.
  Differences: Python acquire = `SET key <app id> NX EX 90`, release = GET + DEL (3 round trips, not
  atomic: D4), no fencing token, renewal by the service's 30 s scheduler task; kaiju-locks = one acquire
  Lua script (fencing token, wait queue) + one compare-and-delete release script (2 round trips) and a
  renewal task per guard. (Rust's raw `SET NX PX` + `DEL` row has no key here.)
  The Rust hand-off rows (contended) have no key here.

cache (bench/src/cache.rs; Rust: 10,000 / 100,000 pairs and 50 bulk rounds,
       here 10,000 / 20,000 pairs and 50 bulk rounds)
* cache.set_get.1, cache.set_get.64 [cmd/s, a set and a get = 2 commands]: `RedisCache.set(key, user)`
  then `RedisCache.get(key, User)` (not None asserted), split over 1 / 64 tasks, task t on keys
  `<env>.<t>.<i % 100>`; `User` = msgspec Struct (id: UUID, name: str, blocked: bool), stored in
  kaiju's array form. One warm-up round (2,000 pairs, 8 tasks), as in Rust.
* cache.mset.1000, cache.mget.1000 [values/s]: `RedisCache.mset({1,000 keys: User})` and
  `RedisCache.mget(keys, User)` timed separately over 50 rounds, as in Rust; values/s = 1,000 * rounds /
  summed time. Median of 3. (Library defect met on the way: `RedisCache.mget(keys, SomeStruct)` raises
  KeyError unless that struct type went through set/get/mset earlier in the process; here mset runs
  first.)
  The Rust near-cache and get_or_set rows have no Python equivalent here (no key).

rpc (bench/src/rpc.rs; Rust: 50,000 calls, here RPC_CALLS = 20,000)
* rpc.e2e.10, rpc.e2e.100 [calls/s]: one kaiju app with Scheduler, RedisTransportService,
  RedisLocksService (required by the listener), JSONRPCServer (defaults: max_parallel_tasks 128),
  a `bench` service whose `noop()` route (GUEST permission) counts calls, RedisListener (scope SYSTEM,
  max_batch_size 10 / 100, max_parallel_batches 4) and RedisStreamRPCClient. Clock: from the first
  `RedisStreamRPCClient.call("bench.noop", None)` (100 at a time under gather; one stream entry per
  call, each a notification with a Correlation-Id header) until `noop` ran the 20,000th time.
  Rust: `RpcClient::call_each` of 100 calls per write. Same listener differences as streams (NOACK,
  sequential batches); in Python the server also runs each notification as its own asyncio task.
  As for streams, the producer (`call` builds headers and a Correlation-Id per call) bounds the
  figure; stderr shows the `call` producer alone as a diagnostic.
* rpc.round_trip.p50_ms, rpc.round_trip.p99_ms: null. kaiju-redis stream RPC is notification-only:
  `StreamRPCClient.call` forces nowait=True, no request id is written, and the listener builds
  `RPCRequest(id=None)`, so no response is ever produced (see WIRE.md section 2); there is no
  request -> response path over Redis to time (only over HTTP, which is not this workload).
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import uuid
import warnings
from urllib.parse import unquote, urlparse

import coredis
from msgspec import Struct

from kaiju_tools.app import SERVICE_CLASS_REGISTRY, ContextableService, ProjectSettings, init_app
from kaiju_tools.interfaces import PublicInterface
from kaiju_redis.services import RedisListener

STREAM_MESSAGES = 20_000
DRAIN_MESSAGES = 50_000
RPC_CALLS = 20_000
PIPELINE = 100
LATENCY_MESSAGES = 3_000
LOCK_PAIRS = 5_000
PAIRS_SEQUENTIAL = 10_000
PAIRS_CONCURRENT = 20_000
TASKS = 64
BULK = 1_000
BULK_ROUNDS = 50
ROUNDS = 3


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def emit(name: str, value: float | None, unit: str, why: str | None = None) -> None:
    row = {"name": name, "value": None if value is None else float(value), "unit": unit}
    if why is not None:
        row["why"] = why
    print(json.dumps(row), flush=True)


def median(values: list[float]) -> float:
    """The same pick as bench/src/main.rs: sorted[len / 2]."""
    return sorted(values)[len(values) // 2]


def percentiles(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    if not s:
        return float("nan"), float("nan")
    pick = lambda q: s[int((len(s) - 1) * q)]  # noqa: E731
    return pick(0.5), pick(0.99)


# ---------------------------------------------------------------------------------------------------
# kaiju app construction (what init_app does with a project config, built from a dict)


def redis_settings(url: str) -> dict:
    parsed = urlparse(url)
    settings = {"host": parsed.hostname or "localhost", "port": parsed.port or 6379}
    db = parsed.path.strip("/")
    if db:
        settings["db"] = int(db)
    if parsed.password:
        settings["password"] = unquote(parsed.password)
    if parsed.username:
        settings["username"] = unquote(parsed.username)
    return settings


class CountingListener(RedisListener):
    """RedisListener whose per-entry hook is a no-op handler (instead of JSONRPCServer.call).

    Everything else is the library's: the XREADGROUP loop, msgpack decoding of the `_` field, XACK.
    """

    handled = 0
    target = 0
    done: asyncio.Future | None = None
    on_message = None  # optional callable(body, headers)

    async def _process_request(self, data) -> None:
        body, headers = data
        if self.on_message is not None:
            self.on_message(body, headers)
        self.handled += 1
        if self.handled == self.target and self.done is not None and not self.done.done():
            self.done.set_result(time.perf_counter())


class BenchService(ContextableService, PublicInterface):
    """The `bench` RPC service: `bench.noop()` counts its calls."""

    service_name = "bench"
    handled = 0
    target = 0
    done: asyncio.Future | None = None

    @property
    def routes(self) -> dict:
        return {"noop": self.noop}

    @property
    def permissions(self) -> dict:
        return {"*": self.PermissionKeys.GLOBAL_GUEST_PERMISSION}

    async def noop(self) -> None:
        self.handled += 1
        if self.handled == self.target and self.done is not None and not self.done.done():
            self.done.set_result(time.perf_counter())


SERVICE_CLASS_REGISTRY.register(CountingListener)
SERVICE_CLASS_REGISTRY.register(BenchService)


def make_app(url: str, env: str, name: str, services: list):
    transport = {"cls": "RedisTransportService", "name": "redis", "settings": redis_settings(url)}
    settings = ProjectSettings(
        packages=["kaiju_tools", "kaiju_redis"],
        app={"debug": False},
        run={},
        main={"name": name, "version": "1.0.0", "env": env, "loglevel": "WARNING"},
        etc={},
        services=["Scheduler", transport, *services],
    )
    return init_app(settings)


async def start(app) -> None:
    await app.services.init()  # every service's init (config order), then post_init (RPC routes)


async def stop(app) -> None:
    for _name, service in app.services.items():
        if isinstance(service, RedisListener) and service._loop is not None:
            # Listener.close() never stops its read loop (D20); stop it before the transport goes.
            service._closing = True
            service._loop.cancel()
            try:
                await service._loop
            except BaseException:  # noqa: the cancellation itself
                pass
    await app.services.close()


def stream_key(env: str, app_name: str, topic: str = "rpc") -> str:
    return f"{env}.{app_name}._stream.{topic}"


async def create_group(admin: coredis.Redis, key: str, group: str) -> None:
    """What RedisListener._create_group does (group at `$`, MKSTREAM), done before the listener starts."""
    await admin.xgroup_create(key, group, identifier="$", mkstream=True)


async def cleanup(admin: coredis.Redis, env: str) -> int:
    deleted = 0
    batch = []
    async for key in admin.scan_iter(match=f"{env}.*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += await admin.delete(batch)
            batch = []
    if batch:
        deleted += await admin.delete(batch)
    return deleted


def admin_client(url: str) -> coredis.Redis:
    return coredis.Redis(**redis_settings(url))


# ---------------------------------------------------------------------------------------------------
# streams


async def write_pipelined(client, key: str, n: int, body) -> None:
    """The measured writer: the producer's own `write`, 100 concurrent calls at a time."""
    for _ in range(n // PIPELINE):
        await asyncio.gather(*(client.write(key, body, {}) for _ in range(PIPELINE)))


async def write_backlog(client, key: str, n: int, body) -> None:
    """Untimed backlog for the drain figure: the bytes `client.write` would send (XADD key * _
    <client._dumps((body, headers))>), sent in coredis pipelines of 1,000 because that is faster."""
    payload = client._dumps((body, {}))
    for _ in range(n // 1000):
        pipe = await client._transport.pipeline(transaction=False)
        for _ in range(1000):
            pipe.xadd(key, {b"_": payload})
        await pipe.execute()


def listener_settings(batch: int, parallel: int | None) -> dict:
    settings = {"transport": "redis", "topic": "rpc", "scope": "SYSTEM", "max_batch_size": batch}
    if parallel:
        settings["max_parallel_batches"] = parallel
    return settings


def streams_listener_app(url: str, env: str, name: str, batch: int, parallel: int | None):
    return make_app(
        url,
        env,
        name,
        [
            {"cls": "RedisLocksService", "settings": {"transport": "redis"}},  # required by Listener
            {"cls": "JSONRPCServer"},  # required by Listener (not called: _process_request is overridden)
            {"cls": "CountingListener", "name": "listener", "settings": listener_settings(batch, parallel)},
        ],
    )


def arm(service, target: int):
    service.handled = 0
    service.target = target
    service.done = asyncio.get_running_loop().create_future()
    return service.done


async def streams_e2e(url, env, admin, writer, batch: int, rnd: int) -> float:
    name = f"e2e{batch}r{rnd}"
    key = stream_key(env, name)
    await create_group(admin, key, name)
    app = streams_listener_app(url, env, name, batch, 4)
    await start(app)
    listener = app.services["listener"]
    done = arm(listener, STREAM_MESSAGES)
    started = time.perf_counter()
    await write_pipelined(writer, key, STREAM_MESSAGES, ["bench.noop", 0])
    finished = await asyncio.wait_for(done, 120)
    rate = STREAM_MESSAGES / (finished - started)
    await stop(app)
    await admin.delete([key])
    return rate


async def streams_drain(url, env, admin, writer, rnd: int) -> float:
    name = f"drain{rnd}"
    key = stream_key(env, name)
    await create_group(admin, key, name)  # before the backlog: the group starts at `$` (D7)
    await write_backlog(writer, key, DRAIN_MESSAGES, ["bench.noop", 0])
    assert await admin.xlen(key) == DRAIN_MESSAGES
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    app = streams_listener_app(url, env, name, 100, 4)
    listener = app.services["listener"]
    listener.handled, listener.target, listener.done = 0, DRAIN_MESSAGES, loop.create_future()
    await start(app)
    finished = await asyncio.wait_for(listener.done, 120)
    rate = DRAIN_MESSAGES / (finished - started)
    await stop(app)
    await admin.delete([key])
    return rate


async def streams_latency(url, env, admin, writer) -> tuple[float, float]:
    name = "latency"
    key = stream_key(env, name)
    await create_group(admin, key, name)
    app = streams_listener_app(url, env, name, 10, None)
    await start(app)
    listener = app.services["listener"]
    samples: list[float] = []

    def record(body, _headers):
        samples.append((time.time_ns() // 1000 - body[1]) / 1000.0)

    listener.on_message = record
    arm(listener, LATENCY_MESSAGES)
    t0 = time.perf_counter()
    for i in range(LATENCY_MESSAGES):
        delay = t0 + i * 0.001 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await writer.write(key, ["bench.noop", time.time_ns() // 1000], {})
    await asyncio.sleep(0.5)
    await stop(app)
    await admin.delete([key])
    if len(samples) != LATENCY_MESSAGES:
        log(f"latency: {len(samples)} of {LATENCY_MESSAGES} messages handled")
    return percentiles(samples)


def writer_app(url: str, env: str):
    return make_app(url, env, "pywriter", [{"cls": "RedisStreamRPCClient", "settings": {"transport": "redis"}}])


async def run_streams(url: str, env: str, admin) -> None:
    wapp = writer_app(url, env)
    await start(wapp)
    writer = wapp.services["RedisStreamRPCClient"]
    try:
        key = stream_key(env, "writeronly")
        started = time.perf_counter()
        await write_pipelined(writer, key, STREAM_MESSAGES, ["bench.noop", 0])
        log(f"diagnostic: producer alone (gathered write, no listener): "
            f"{STREAM_MESSAGES / (time.perf_counter() - started):.0f} msg/s")
        await admin.delete([key])
        for batch in (10, 100):
            rates = []
            for rnd in range(ROUNDS):
                rates.append(await streams_e2e(url, env, admin, writer, batch, rnd))
                log(f"streams.e2e.{batch} round {rnd + 1}: {rates[-1]:.0f} msg/s")
            emit(f"streams.e2e.{batch}", median(rates), "msg/s")
        rates = []
        for rnd in range(ROUNDS):
            rates.append(await streams_drain(url, env, admin, writer, rnd))
            log(f"streams.drain.100 round {rnd + 1}: {rates[-1]:.0f} msg/s")
        emit("streams.drain.100", median(rates), "msg/s")
        p50, p99 = await streams_latency(url, env, admin, writer)
        emit("streams.latency.p50_ms", p50, "ms")
        emit("streams.latency.p99_ms", p99, "ms")
    finally:
        await stop(wapp)


# ---------------------------------------------------------------------------------------------------
# locks


async def locks_uncontended(url: str, env: str, tasks: int, rnd: str) -> float:
    app = make_app(url, env, f"locks{rnd}", [{"cls": "RedisLocksService", "settings": {"transport": "redis"}}])
    await start(app)
    locks = app.services["locks"]
    per_task = LOCK_PAIRS // tasks

    async def worker(t: int) -> None:
        key = f"{env}.lock.{t}"
        for _ in range(per_task):
            lock_id = await locks.acquire(key)
            await locks.release(key, lock_id)

    started = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    rate = per_task * tasks / (time.perf_counter() - started)
    await stop(app)
    return rate


async def run_locks(url: str, env: str, admin) -> None:
    await locks_uncontended(url, env, 8, "warmup")
    for tasks in (1, 64):
        rates = []
        for rnd in range(ROUNDS):
            rates.append(await locks_uncontended(url, env, tasks, f"{tasks}r{rnd}"))
            log(f"locks.uncontended.{tasks} round {rnd + 1}: {rates[-1]:.0f} pairs/s")
        emit(f"locks.uncontended.{tasks}", median(rates), "pairs/s")


# ---------------------------------------------------------------------------------------------------
# cache


class User(Struct):
    id: uuid.UUID
    name: str
    blocked: bool = False


def user() -> User:
    return User(id=uuid.uuid4(), name="bob", blocked=False)


async def cache_pairs(cache, env: str, pairs: int, tasks: int) -> float:
    value = user()
    per_task = pairs // tasks

    async def worker(t: int) -> None:
        for i in range(per_task):
            key = f"{env}.{t}.{i % 100}"
            await cache.set(key, value)
            got = await cache.get(key, User)
            assert got is not None

    started = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    return 2 * per_task * tasks / (time.perf_counter() - started)


async def cache_bulk(cache, env: str) -> tuple[float, float]:
    items = {f"{env}.bulk.{i}": user() for i in range(BULK)}
    keys = list(items)
    set_time = get_time = 0.0
    for _ in range(BULK_ROUNDS):
        t = time.perf_counter()
        await cache.mset(items)
        set_time += time.perf_counter() - t
        t = time.perf_counter()
        got = await cache.mget(keys, User)
        get_time += time.perf_counter() - t
        assert len(got) == BULK and all(g is not None for g in got)
    values = BULK * BULK_ROUNDS
    return values / set_time, values / get_time


async def run_cache(url: str, env: str, admin) -> None:
    app = make_app(url, env, "cache", [{"cls": "RedisCache", "settings": {"transport": "redis"}}])
    await start(app)
    cache = app.services["RedisCache"]
    try:
        await cache_pairs(cache, env, 2_000, 8)  # warm-up
        for name, n, tasks in (("cache.set_get.1", PAIRS_SEQUENTIAL, 1), ("cache.set_get.64", PAIRS_CONCURRENT, TASKS)):
            rates = []
            for rnd in range(ROUNDS):
                rates.append(await cache_pairs(cache, env, n, tasks))
                log(f"{name} round {rnd + 1}: {rates[-1]:.0f} cmd/s")
            emit(name, median(rates), "cmd/s")
        sets, gets = [], []
        for rnd in range(ROUNDS):
            s, g = await cache_bulk(cache, env)
            sets.append(s)
            gets.append(g)
            log(f"cache bulk round {rnd + 1}: mset {s:.0f} values/s, mget {g:.0f} values/s")
        emit("cache.mset.1000", median(sets), "values/s")
        emit("cache.mget.1000", median(gets), "values/s")
    finally:
        await stop(app)


# ---------------------------------------------------------------------------------------------------
# rpc


def rpc_app(url: str, env: str, name: str, batch: int):
    return make_app(
        url,
        env,
        name,
        [
            {"cls": "RedisLocksService", "settings": {"transport": "redis"}},
            {"cls": "JSONRPCServer"},
            {"cls": "BenchService", "name": "bench"},
            {"cls": "RedisListener", "settings": listener_settings(batch, 4)},
            {"cls": "RedisStreamRPCClient", "settings": {"transport": "redis"}},
        ],
    )


async def rpc_e2e(url: str, env: str, admin, batch: int, rnd: int) -> float:
    name = f"r{batch}r{rnd}"
    key = stream_key(env, name)
    await create_group(admin, key, name)
    app = rpc_app(url, env, name, batch)
    await start(app)
    bench = app.services["bench"]
    client = app.services["RedisStreamRPCClient"]
    done = arm(bench, RPC_CALLS)
    started = time.perf_counter()
    for _ in range(RPC_CALLS // PIPELINE):
        await asyncio.gather(*(client.call("bench.noop", None) for _ in range(PIPELINE)))
    finished = await asyncio.wait_for(done, 120)
    rate = RPC_CALLS / (finished - started)
    await stop(app)
    await admin.delete([key])
    return rate


async def run_rpc(url: str, env: str, admin) -> None:
    wapp = writer_app(url, env)
    await start(wapp)
    try:
        client = wapp.services["RedisStreamRPCClient"]
        started = time.perf_counter()
        for _ in range(RPC_CALLS // PIPELINE):
            await asyncio.gather(*(client.call("bench.noop", None, app="callonly") for _ in range(PIPELINE)))
        log(f"diagnostic: producer alone (gathered call, no listener): "
            f"{RPC_CALLS / (time.perf_counter() - started):.0f} calls/s")
        await admin.delete([stream_key(env, "callonly")])
    finally:
        await stop(wapp)
    for batch in (10, 100):
        rates = []
        for rnd in range(ROUNDS):
            rates.append(await rpc_e2e(url, env, admin, batch, rnd))
            log(f"rpc.e2e.{batch} round {rnd + 1}: {rates[-1]:.0f} calls/s")
        emit(f"rpc.e2e.{batch}", median(rates), "calls/s")
    # StreamRPCClient.call forces nowait=True and the listener builds RPCRequest(id=None): no
    # response is ever produced, so there is no round trip to time.
    why = "stream RPC in kaiju-redis is notification-only: no responses"
    emit("rpc.round_trip.p50_ms", None, "ms", why)
    emit("rpc.round_trip.p99_ms", None, "ms", why)


# ---------------------------------------------------------------------------------------------------


GROUPS = {"streams": run_streams, "locks": run_locks, "cache": run_cache, "rpc": run_rpc}


async def main(group: str, url: str) -> int:
    env = f"pybench{os.urandom(4).hex()}"
    admin = admin_client(url)
    await admin.ping()
    log(f"{group}: env {env}, {url}")
    t0 = time.perf_counter()
    try:
        await GROUPS[group](url, env, admin)
    finally:
        deleted = await cleanup(admin, env)
        log(f"{group}: deleted {deleted} key(s) under {env}.* (created by this run); took {time.perf_counter() - t0:.1f} s")
        admin.connection_pool.disconnect()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("group", choices=sorted(GROUPS))
    parser.add_argument("--url", required=True, help="redis://host:port[/db]")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    warnings.simplefilter("ignore")  # kaiju's annotation-parser warnings on route registration
    sys.exit(asyncio.run(main(args.group, args.url)))

"""Python peer for the kaiju-cache interop test: the real kaiju-redis 2.4.2 RedisCache.

usage: cache_peer.py write|read|schema-write|schema-read <redis-url> <key-prefix>

write: stores one value per type under <prefix>.<name> with RedisCache.set.
read:  reads the values Rust stored under <prefix>.<name> with RedisCache.get(key, data_type)
       and compares them with what Rust meant to store. Exit 1 on any mismatch.
schema-write: stores structs of an older and a newer schema than Rust's User, and one with
       its UUID as a string (<prefix>.newer, .older, .uuid_str).
schema-read: reads what Rust stored with its User (<prefix>.rust_user) as the newer and the
       older Python schema, as a mixed fleet rolling out a change would.
"""

import asyncio
import sys
import types
from typing import Any
from urllib.parse import urlparse
from uuid import UUID

import coredis
import msgspec
from msgspec import Struct
from kaiju_redis.services import RedisCache

U = UUID("01234567-89ab-cdef-0123-456789abcdef")


class User(Struct):
    id: UUID
    name: str
    blocked: bool = False


class Outer(Struct):
    user: User
    tags: list[str]


class UserNewer(Struct):
    """User with a field appended: what a service that rolled out first writes."""
    id: UUID
    name: str
    blocked: bool = False
    age: int = 0


class UserOlder(Struct):
    """User before `blocked` existed."""
    id: UUID
    name: str


# name -> (value, data_type used to read it back)
CASES: dict[str, tuple[Any, Any]] = {
    "str": ("hello", str),
    "int": (2**40, int),
    "negative": (-1, int),
    "float": (1.5, float),
    "bool": (True, bool),
    "none": (None, Any),
    "bytes": (b"\x00\x01\xff", bytes),
    "uuid": (U, UUID),
    "list": ([1, 2, 3], list[int]),
    "dict": ({"a": 1, "b": 2}, dict[str, int]),
    "tuple": ((1, "two", 3.0), tuple[int, str, float]),
    "set": ({1, 2, 3}, set[int]),
    "frozenset": (frozenset({4, 5}), frozenset[int]),
    "struct": (User(U, "bob"), User),
    "struct_blocked": (User(U, "eve", True), User),
    "nested": (Outer(User(U, "bob"), ["t"]), Outer),
}


async def schema(cache: RedisCache, mode: str, prefix: str) -> int:
    if mode == "schema-write":
        await cache.set(f"{prefix}.newer", UserNewer(U, "new", True, 41))
        await cache.set(f"{prefix}.older", UserOlder(U, "old"))
        # A struct whose UUID is the 36-char string (msgspec's default encoder, not RedisCache's).
        await cache._transport.set(f"{prefix}.uuid_str", msgspec.msgpack.encode([str(U), "txt", False]))
        return 0
    failures = 0
    key = f"{prefix}.rust_user"
    for data_type, expected in [
        (UserNewer, UserNewer(U, "rust", True, 0)),
        (UserOlder, UserOlder(U, "rust")),
        (User, User(U, "rust", True)),
    ]:
        got = await cache.get(key, data_type)
        ok = got == expected
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {data_type.__name__}: {got!r} (expected {expected!r})")
    key = f"{prefix}.rust_user_newer"
    got = await cache.get(key, User)
    ok = got == User(U, "rust", True)
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} User from a newer Rust struct: {got!r}")
    return 1 if failures else 0


async def main() -> int:
    mode, url, prefix = sys.argv[1:4]
    parsed = urlparse(url)
    app = types.SimpleNamespace(name="interop", id=str(U), env="test")
    cache = RedisCache(app=app, transport=None)
    cache._transport = coredis.Redis(host=parsed.hostname, port=parsed.port)
    if mode.startswith("schema-"):
        return await schema(cache, mode, prefix)
    failures = 0
    for name, (value, data_type) in CASES.items():
        key = f"{prefix}.{name}"
        if mode == "write":
            await cache.set(key, value)
            continue
        got = await cache.get(key, data_type)
        ok = got == value and type(got) is type(value)
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {got!r} (expected {value!r})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""Python peer for the kaiju-locks interop test: kaiju-redis 2.4.2's RedisLocksService.

It calls the service's own Redis primitives (`_acquire`, `_owner`, `_release`), which are what
its `acquire()`/`release()` loop runs, without the kaiju app and scheduler around them.

usage: lock_peer.py try <redis-url> <key> <owner>   -> prints "acquired" or "exists"
       lock_peer.py owner <redis-url> <key>         -> prints the owner or "none"
       lock_peer.py release <redis-url> <key> <owner> -> prints "released" or "not-owner"
"""

import asyncio
import sys
import types
from urllib.parse import urlparse

import coredis
from kaiju_redis.services import RedisLocksService
from kaiju_tools.locks import LockExistsError, NotLockOwnerError


async def main() -> int:
    mode, url, key = sys.argv[1:4]
    parsed = urlparse(url)
    app = types.SimpleNamespace(name="interop", id="python-peer", env="test")
    locks = RedisLocksService.__new__(RedisLocksService)
    locks.app = app
    locks._transport = coredis.Redis(host=parsed.hostname, port=parsed.port)
    if mode == "try":
        try:
            await locks._acquire([key], sys.argv[4], 30)
            print("acquired")
        except LockExistsError:
            print("exists")
    elif mode == "owner":
        print(await locks._owner(key) or "none")
    elif mode == "release":
        try:
            await locks._release([key], sys.argv[4])
            print("released")
        except NotLockOwnerError:
            print("not-owner")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""Python peer for the kaiju-streams interop test: kaiju-redis 2.4.2's stream client encoding.

usage: stream_peer.py write <redis-url> <stream> <n>  -> RedisStreamRPCClient.write of n requests
       stream_peer.py read <redis-url> <stream>       -> every entry decoded with kaiju's
                                                          msgpack_loads, one repr per line
"""

import asyncio
import sys
from urllib.parse import urlparse

import coredis
from kaiju_redis.services import RedisStreamRPCClient
from kaiju_tools.encoding import msgpack_loads


async def main() -> int:
    mode, url, stream = sys.argv[1:4]
    parsed = urlparse(url)
    redis = coredis.Redis(host=parsed.hostname, port=parsed.port)
    if mode == "write":
        client = RedisStreamRPCClient.__new__(RedisStreamRPCClient)
        client._transport = redis
        for i in range(int(sys.argv[4])):
            headers = {"Correlation-Id": f"py{i}", "Timeout": 5}
            await client.write(stream, ["ext.record", {"value": i}], headers)
    elif mode == "read":
        for _id, fields in await redis.xrange(stream):
            print(repr(msgpack_loads(fields[b"_"])))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

# asyncio_server.py — the Python server of test_runtimes.c, written as such
# servers are: an asyncio Protocol that answers a request line with
# transport.write() of the whole file in 64 KiB chunks, never awaiting
# drain (there is no drain on a bare transport), then transport.close(),
# which closes once asyncio's own buffer is flushed.
#
#   python3 asyncio_server.py FILE
#
# Status lines on fd 3: "port P", then per response "done bytes=B
# buffered=K" (K: bytes asyncio held in its own buffer right after the
# writes: what the kernel had refused). Nothing on stdout.
import asyncio
import os
import sys

CHUNK = 64 * 1024


def status(line):
    os.write(3, (line + "\n").encode())


class Serve(asyncio.Protocol):
    def __init__(self, data):
        self.data = data
        self.transport = None
        self.answered = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, request):
        if self.answered:
            return
        self.answered = True
        for off in range(0, len(self.data), CHUNK):
            self.transport.write(self.data[off:off + CHUNK])
        buffered = self.transport.get_write_buffer_size()
        self.transport.close()
        status(f"done bytes={len(self.data)} buffered={buffered}")


async def main(path):
    with open(path, "rb") as f:
        data = f.read()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Serve(data), "127.0.0.1", 0)
    status(f"port {server.sockets[0].getsockname()[1]}")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

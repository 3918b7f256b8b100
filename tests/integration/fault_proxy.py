"""A fault-injecting proxy in front of each node's peer port (the kernel here has no
netem, so delay and loss are made in user space).

Every node advertises its proxy's address, so all peer traffic to it (gossip, ledger
sync, offers and their streams) passes through the proxy. The proxy reads one HTTP
request per connection, finds its sender in the signed envelope's `from` field, and then:

- partition: the sender and this node are on different sides → the connection is held
  open and never answered (a blackhole, like a cut link) until the sender gives up;
- loss: with probability `loss` the request is dropped (the connection closes unanswered);
- delay: otherwise it waits uniform(delay) seconds, forwards the request, and relays the
  answer back as it comes (streams included), with `Connection: close` both ways so that
  each request is judged on its own. A sender that goes away closes the upstream side too.

`FaultNet` holds the rules all proxies share; tests change them while the nodes run.
"""
from __future__ import annotations

import asyncio
import json
import random
import threading
from dataclasses import dataclass, field

MAX_HEAD = 64 << 10
MAX_BODY = 8 << 20
BLACKHOLE_S = 30.0


@dataclass
class FaultNet:
    delay: tuple[float, float] = (0.0, 0.0)
    loss: float = 0.0
    # node id -> side; nodes on different sides cannot reach each other. Empty: no partition.
    sides: dict[str, int] = field(default_factory=dict)
    seed: int = 7
    counts: dict[str, int] = field(default_factory=lambda: {"forwarded": 0, "dropped": 0, "blackholed": 0})

    def __post_init__(self):
        self.rng = random.Random(self.seed)
        self.lock = threading.Lock()

    def decide(self, src: str | None, dst: str) -> tuple[str, float]:
        with self.lock:
            if src and self.sides and self.sides.get(src, 0) != self.sides.get(dst, 0):
                self.counts["blackholed"] += 1
                return "blackhole", 0.0
            if self.loss and self.rng.random() < self.loss:
                self.counts["dropped"] += 1
                return "drop", 0.0
            self.counts["forwarded"] += 1
            lo, hi = self.delay
            return "forward", self.rng.uniform(lo, hi) if hi > 0 else 0.0


def _with_close(head: bytes) -> bytes:
    """The head with any Connection header replaced by `Connection: close`."""
    lines = head.split(b"\r\n")
    kept = [l for l in lines[1:] if l and not l.lower().startswith(b"connection:")]
    return b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n"


class FaultProxy:
    """Listens on 127.0.0.1:<port> (a free one) in a thread of its own; forwards to
    127.0.0.1:`target_port`, the peer port of the node whose id is `node_id`."""

    def __init__(self, net: FaultNet, node_id: str, target_port: int):
        self.net, self.node_id, self.target_port = net, node_id, target_port
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.server = server
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def close(self):
        def stop():
            self.server.close()
            for t in asyncio.all_tasks(self.loop):
                t.cancel()
            self.loop.stop()
        self.loop.call_soon_threadsafe(stop)
        self.thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_HEAD:
                return
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(min(length, MAX_BODY))
            src = None
            try:
                src = json.loads(body).get("from")
            except (ValueError, AttributeError):
                pass
            action, delay = self.net.decide(src, self.node_id)
            if action == "blackhole":
                # Read (and ignore) until the sender gives up, at most BLACKHOLE_S.
                try:
                    await asyncio.wait_for(reader.read(), BLACKHOLE_S)
                except asyncio.TimeoutError:
                    pass
                return
            if action == "drop":
                return
            if delay:
                await asyncio.sleep(delay)
            await self._forward(_with_close(head) + body, reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _forward(self, request: bytes, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            return
        up_w.write(request)
        await up_w.drain()

        async def relay():
            head = await up_r.readuntil(b"\r\n\r\n")
            client_w.write(_with_close(head))
            while chunk := await up_r.read(65536):
                client_w.write(chunk)
                await client_w.drain()

        async def client_gone():
            await client_r.read()   # EOF (or reset) when the sender closes its side

        tasks = [asyncio.ensure_future(relay()), asyncio.ensure_future(client_gone())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.exception()   # retrieved: a reset or a cut answer is an expected fault
        finally:
            for t in tasks:
                t.cancel()
            up_w.close()

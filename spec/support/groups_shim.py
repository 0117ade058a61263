"""groups_shim.py - a Kafka-protocol proxy in front of `luka broker` that
answers DescribeGroups, which librdkafka 2.0.2's mock cluster does not.

    python3 groups_shim.py UPSTREAM_HOST:PORT [LISTEN_PORT]

Prints "listening: 127.0.0.1:PORT" once it accepts connections (on
LISTEN_PORT, default a free one).  Clients
that bootstrap there reach the broker through it (one upstream broker; the
Metadata and FindCoordinator answers are rewritten to point back at the
shim), and see DescribeGroups (v0) in the ApiVersions answer.  The shim
answers DescribeGroups itself from what it saw pass: each SyncGroup that
succeeded makes its sender a member of the group, with the client id of
its request header, its address as the host (as Kafka shows it,
"/127.0.0.1") and the assignment the coordinator gave it; a LeaveGroup
removes it.  A group it saw no member of is described as Kafka describes
an unknown group: state "Dead", no members.

It exists so that specs can check `luka lag`'s member columns through
librdkafka's real DescribeConsumerGroups call, and compare them with
KafkaJS's describeGroups; the members it reports are the ones the mock
cluster really formed, not invented ones.
"""
import asyncio
import struct
import sys

API_METADATA, API_FIND_COORDINATOR, API_SYNC_GROUP = 3, 10, 14
API_LEAVE_GROUP, API_DESCRIBE_GROUPS, API_API_VERSIONS = 13, 15, 18

# group id -> {member id: (client id, host, assignment bytes)}
groups = {}
listen_port = 0


class Reader:
    """Reads big-endian Kafka primitives from a bytes buffer."""

    def __init__(self, buf, pos=0):
        self.buf, self.pos = buf, pos

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.buf[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def bytes(self):
        n = self.take(">i")
        if n < 0:
            return None
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b


def kstring(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def kbytes(b):
    return struct.pack(">i", len(b)) + b


def describe_groups(body, version):
    """The DescribeGroups v0 answer for the groups of the request body."""
    r = Reader(body)
    names = [r.string() for _ in range(r.take(">i"))]
    out = struct.pack(">i", len(names))
    for name in names:
        members = groups.get(name, {})
        state = "Stable" if members else ("Empty" if name in groups else "Dead")
        out += struct.pack(">h", 0) + kstring(name) + kstring(state)
        out += kstring("consumer" if name in groups else "") + kstring("shim" if members else "")
        out += struct.pack(">i", len(members))
        for member_id, (client_id, host, assignment) in sorted(members.items()):
            out += kstring(member_id) + kstring(client_id) + kstring(host)
            out += kbytes(b"") + kbytes(assignment)
    return out


def patch_api_versions(body, version):
    """Add DescribeGroups v0..v0 to a successful ApiVersions answer."""
    if version > 2:
        return body
    error, count = struct.unpack_from(">hi", body, 0)
    if error:
        return body
    end = 6 + count * 6
    for i in range(count):
        if struct.unpack_from(">h", body, 6 + i * 6)[0] == API_DESCRIBE_GROUPS:
            return body
    return (struct.pack(">hi", error, count + 1) + body[6:end]
            + struct.pack(">hhh", API_DESCRIBE_GROUPS, 0, 0) + body[end:])


def patch_metadata(body, version):
    """Point every broker of a Metadata answer (v0..v8) at the shim."""
    body = bytearray(body)
    r = Reader(body, 4 if version >= 3 else 0)
    for _ in range(r.take(">i")):
        r.take(">i")
        r.string()
        struct.pack_into(">i", body, r.pos, listen_port)
        r.take(">i")
        if version >= 1:
            r.string()
    return bytes(body)


def patch_find_coordinator(body, version):
    """Point a FindCoordinator answer (v0..v2) at the shim."""
    body = bytearray(body)
    r = Reader(body, 4 if version >= 1 else 0)
    if r.take(">h"):
        return bytes(body)
    if version >= 1:
        r.string()
    r.take(">i")
    r.string()
    struct.pack_into(">i", body, r.pos, listen_port)
    return bytes(body)


async def read_frame(reader):
    size = struct.unpack(">i", await reader.readexactly(4))[0]
    return await reader.readexactly(size)


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


async def serve(client_r, client_w, upstream):
    host, port = upstream
    try:
        up_r, up_w = await asyncio.open_connection(host, port)
    except OSError:
        client_w.close()
        return
    peer = "/" + client_w.get_extra_info("peername")[0]
    pending = {}  # correlation id -> (api key, version, what the answer completes)

    async def from_client():
        while True:
            req = await read_frame(client_r)
            r = Reader(req)
            api, version, corr = r.take(">h"), r.take(">h"), r.take(">i")
            client_id = r.string() or ""
            if api == API_DESCRIBE_GROUPS:
                client_w.write(frame(struct.pack(">i", corr) + describe_groups(req[r.pos:], version)))
                continue
            extra = None
            if api == API_SYNC_GROUP and version <= 3:
                group = r.string()
                r.take(">i")  # the generation
                extra = (group, r.string(), client_id)
            elif api == API_LEAVE_GROUP and version <= 2:
                group, member = r.string(), r.string()
                groups.get(group, {}).pop(member, None)
            pending[corr] = (api, version, extra)
            up_w.write(frame(req))

    async def from_upstream():
        while True:
            resp = await read_frame(up_r)
            corr = struct.unpack_from(">i", resp, 0)[0]
            api, version, extra = pending.pop(corr, (None, 0, None))
            body = resp[4:]
            if api == API_API_VERSIONS:
                body = patch_api_versions(body, version)
            elif api == API_METADATA and version <= 8:
                body = patch_metadata(body, version)
            elif api == API_FIND_COORDINATOR and version <= 2:
                body = patch_find_coordinator(body, version)
            elif api == API_SYNC_GROUP and extra:
                r = Reader(body, 4 if version >= 1 else 0)
                if r.take(">h") == 0:
                    group, member, client_id = extra
                    groups.setdefault(group, {})[member] = (client_id, peer, r.bytes() or b"")
            client_w.write(frame(struct.pack(">i", corr) + body))

    tasks = [asyncio.ensure_future(from_client()), asyncio.ensure_future(from_upstream())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        client_w.close()
        up_w.close()


async def main():
    global listen_port
    host, port = sys.argv[1].rsplit(":", 1)
    upstream = (host, int(port))
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    server = await asyncio.start_server(lambda r, w: serve(r, w, upstream), "127.0.0.1", port)
    listen_port = server.sockets[0].getsockname()[1]
    print("listening: 127.0.0.1:%d" % listen_port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass

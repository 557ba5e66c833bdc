"""permessage-deflate against Verb's examples with a third-party client (Python `websockets`).

Run by `examples/tests/it/deflate.rs` (which starts the servers) as:

    python deflate_client.py echo ws://127.0.0.1:PORT/      # plain-echo, --max-payload 1048576
    python deflate_client.py config ws://127.0.0.1:PORT/ws  # config

Exits non-zero, with the reason, on the first broken expectation.
"""

import asyncio
import itertools
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.extensions import permessage_deflate as pmd

# Count frames that arrive compressed (RSV1 set), as the client's extension sees them.
COMPRESSED_IN = 0
_decode = pmd.PerMessageDeflate.decode


def _counting_decode(self, frame, *, max_size=None):
    global COMPRESSED_IN
    if frame.rsv1:
        COMPRESSED_IN += 1
    return _decode(self, frame, max_size=max_size)


pmd.PerMessageDeflate.decode = _counting_decode


def check(condition, message):
    if not condition:
        raise SystemExit(f"FAILED: {message}")


def payload(n):
    """Compressible JSON text of about n bytes, like the live-feed's ticks."""
    items = []
    size = 0
    i = 0
    while size < n:
        item = {"symbol": f"S{i % 50}", "price": 100 + (i * 7) % 13 + 0.25, "seq": i}
        items.append(item)
        size += len(json.dumps(item))
        i += 1
    return json.dumps({"type": "tick", "items": items})


def extension_header(ws):
    return ws.response.headers.get("Sec-WebSocket-Extensions")


async def round_trips(ws, label):
    """Text and binary, small and large, single-frame and fragmented, all echoed unchanged."""
    global COMPRESSED_IN
    before = COMPRESSED_IN
    text = payload(20_000)
    await ws.send(text)
    check(await ws.recv() == text, f"{label}: large text echoed")
    data = bytes(reversed(text.encode()))
    await ws.send(data)
    check(await ws.recv() == data, f"{label}: large binary echoed")
    await ws.send("hi")
    check(await ws.recv() == "hi", f"{label}: short text echoed")
    # A fragmented compressed message: RSV1 on the first frame only.
    fragments = [text[:5000], text[5000:12000], text[12000:]]
    await ws.send(iter(fragments))
    check(await ws.recv() == text, f"{label}: fragmented text echoed")
    await ws.send(iter([data[:3], data[3:]]))
    check(await ws.recv() == data, f"{label}: fragmented binary echoed")
    # Many messages in a row (context takeover, if any, carries across them).
    for i in range(20):
        message = payload(300 + i * 50)
        await ws.send(message)
        check(await ws.recv() == message, f"{label}: message {i} of a stream echoed")
    return COMPRESSED_IN - before


async def negotiation(url):
    """Every combination of the four parameters: accepted or narrowed, and messages round-trip."""
    combos = itertools.product(
        [False, True],  # server_no_context_takeover
        [False, True],  # client_no_context_takeover
        [None, 9, 12, 15],  # server_max_window_bits
        [None, True, 10, 15],  # client_max_window_bits
    )
    count = 0
    for snct, cnct, smwb, cmwb in combos:
        label = f"snct={snct} cnct={cnct} smwb={smwb} cmwb={cmwb}"
        factory = pmd.ClientPerMessageDeflateFactory(
            server_no_context_takeover=snct,
            client_no_context_takeover=cnct,
            server_max_window_bits=smwb,
            client_max_window_bits=cmwb,
        )
        async with connect(url, extensions=[factory], compression=None, max_size=None) as ws:
            header = extension_header(ws)
            check(header is not None, f"{label}: permessage-deflate accepted")
            params = [p.strip() for p in header.split(";")]
            check(params[0] == "permessage-deflate", f"{label}: {header}")
            # Verb's defaults: no context takeover on either side.
            check("server_no_context_takeover" in params, f"{label}: {header}")
            check("client_no_context_takeover" in params, f"{label}: {header}")
            if smwb is not None:
                check(f"server_max_window_bits={smwb}" in params, f"{label}: {header}")
            else:
                check(not any(p.startswith("server_max_window_bits") for p in params), header)
            check(not any(p.startswith("client_max_window_bits") for p in params), header)
            check(len(ws.protocol.extensions) == 1, f"{label}: extension active")
            compressed = await round_trips(ws, label)
            check(compressed >= 20, f"{label}: echoes arrive compressed ({compressed})")
        count += 1
    print(f"negotiation: {count} parameter combinations round-tripped")


async def declined_and_plain(url):
    # A window of 8 bits cannot be produced: accepted, and the server's frames stay plain while the
    # client's compressed ones are still inflated.
    offers = [pmd.ClientPerMessageDeflateFactory(server_max_window_bits=8)]
    before = COMPRESSED_IN
    async with connect(url, extensions=offers, compression=None) as ws:
        header = extension_header(ws) or ""
        check("server_max_window_bits=8" in header, f"server_max_window_bits=8 accepted: {header}")
        await round_trips(ws, "server_max_window_bits=8")
    check(COMPRESSED_IN == before, "nothing compressed towards a client asking for an 8-bit window")
    # An offer with an invalid parameter is declined and the next offer taken.
    raw_offer = "permessage-deflate; server_max_window_bits=7, permessage-deflate"
    async with connect(
        url,
        compression=None,
        extensions=[pmd.ClientPerMessageDeflateFactory()],
        additional_headers={"Sec-WebSocket-Extensions": raw_offer},
    ) as ws:
        header = extension_header(ws) or ""
        check(header.startswith("permessage-deflate") and "=7" not in header, f"fallback: {header}")
    # No offer at all: plain frames.
    before = COMPRESSED_IN
    async with connect(url, compression=None) as ws:
        check(extension_header(ws) is None, "no offer, no extension")
        check(await round_trips(ws, "plain") >= 0, "plain round trips")
    check(COMPRESSED_IN == before, "a client without compression gets no compressed frame")
    # websockets' own default offer (what most Python apps send).
    async with connect(url) as ws:
        check(extension_header(ws) is not None, "default offer accepted")
        await round_trips(ws, "default offer")
    print("8-bit windows, declined offers and plain clients: ok")


async def bomb(url):
    """16 MiB of zeros deflate to about 16 KiB; the server (1 MiB limit) must close with 1009."""
    async with connect(url, max_size=None) as ws:
        check(extension_header(ws) is not None, "compression for the bomb")
        try:
            await ws.send(b"\0" * (16 << 20))
            await asyncio.wait_for(ws.recv(), 10)
            raise SystemExit("FAILED: the bomb was echoed")
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            check(code == 1009, f"bomb closed with 1009, got {code}")
    # The server still serves.
    async with connect(url) as ws:
        await ws.send("after the bomb")
        check(await ws.recv() == "after the bomb", "served after the bomb")
    print("deflate bomb: closed with 1009")


async def config_example(url):
    """The `config` example offers compression and answers with the guide's messages."""
    async with connect(url, subprotocols=["chat"]) as ws:
        header = extension_header(ws)
        check(header is not None and header.startswith("permessage-deflate"), f"config: {header}")
        welcome = json.loads(await ws.recv())
        check(welcome["type"] == "welcome", f"config welcome: {welcome}")
        message = "compressed " * 50
        await ws.send(json.dumps({"type": "chat", "message": message}))
        while True:
            reply = json.loads(await ws.recv())
            if reply["type"] == "chat":
                break
        check(reply["message"] == message, f"config chat: {reply}")
    print("config: compression negotiated, chat round-tripped")


async def main():
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "echo":
        await negotiation(url)
        await declined_and_plain(url)
        await bomb(url)
    elif mode == "config":
        await config_example(url)
    else:
        raise SystemExit(f"unknown mode {mode}")


asyncio.run(main())

#!/usr/bin/env python3
"""Compressed echo, checked byte for byte, with an independent client.

Connects to a WebSocket echo URL once per permessage-deflate offer below,
with python-websockets doing the compression (CPython's zlib), and echoes
text and binary messages from 0 B to 16 MiB, whole and fragmented. Every echo
must come back identical with the same type, and the server must accept
deflate with an answer that honours the offer (RFC 7692 §7).

    python3 -m venv .venv && .venv/bin/pip install -r tests/deflate/requirements.txt
    .venv/bin/python tests/deflate/echo_client.py ws://127.0.0.1:9900/echo

Exit status 0 when every case passed, 1 otherwise. `--max-size` lowers the
largest message (the server's --max-message-size must exceed the largest).
With `--chat` the URL is a chat room: a second connection with the same
offer sends each message, and the first must receive it relayed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import time

from websockets.exceptions import WebSocketException
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.sync.client import connect

MIB = 1 << 20
SIZES = [0, 1, 125, 126, 65_535, 65_536, 65_537, MIB, 16 * MIB]

# Each offer: a name and the client factory's keyword arguments.
OFFERS = [
    ("browser offer (client_max_window_bits)", {}),
    ("no client_max_window_bits", {"client_max_window_bits": None}),
    ("client_no_context_takeover", {"client_no_context_takeover": True}),
    ("server_no_context_takeover", {"server_no_context_takeover": True}),
    (
        "no context takeover both ways",
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
    ),
    ("server_max_window_bits=10", {"server_max_window_bits": 10}),
    # zlib cannot compress with a raw 8-bit window; the server must still
    # send only what a 256-byte window inflates (python inflates with wbits=-8).
    ("server_max_window_bits=8", {"server_max_window_bits": 8}),
    ("client_max_window_bits=9", {"client_max_window_bits": 9}),
]


def text_payload(size: int, rng: random.Random) -> str:
    """Deterministic JSON-ish chat lines, with some non-ASCII text."""
    words = ["hello", "deflate", "window", "écho", "frame", "message", "42", "ψ"]
    out: list[str] = []
    length = 0
    n = 0
    while length < size:
        n += 1
        line = json.dumps(
            {"id": n, "user": f"user{rng.randrange(97)}",
             "text": " ".join(rng.choice(words) for _ in range(rng.randrange(1, 12)))},
            ensure_ascii=False,
        ) + "\n"
        out.append(line)
        length += len(line)
    # Cut on a character boundary: the size is in characters, close enough.
    return "".join(out)[:size]


def binary_payload(size: int, rng: random.Random) -> bytes:
    """Half compressible, half random, so both code paths in zlib run."""
    half = size // 2
    compressible = text_payload(half, rng).encode()[:half]
    return compressible + rng.randbytes(size - len(compressible))


def fragments(data, rng: random.Random):
    """Splits a message into 1..8 pieces of random sizes (some empty)."""
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(0, 8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def check_negotiation(ws, kwargs: dict) -> str | None:
    """Returns an error, or None when the answer honours the offer."""
    header = ws.response.headers.get("Sec-WebSocket-Extensions")
    pmd = [e for e in ws.protocol.extensions if isinstance(e, PerMessageDeflate)]
    if header is None or not pmd:
        return f"permessage-deflate not negotiated (header: {header!r})"
    ext = pmd[0]
    # From the client's side: "local" is the client, "remote" the server.
    if kwargs.get("server_no_context_takeover") and not ext.remote_no_context_takeover:
        return "server_no_context_takeover offered but not in the answer"
    asked = kwargs.get("server_max_window_bits")
    if asked is not None and ext.remote_max_window_bits > asked:
        return f"server window {ext.remote_max_window_bits} > the {asked} offered"
    asked = kwargs.get("client_max_window_bits", True)
    if isinstance(asked, int) and asked is not True and ext.local_max_window_bits > asked:
        return f"client window {ext.local_max_window_bits} > the {asked} offered"
    return None


def run_offer(url: str, name: str, kwargs: dict, sizes: list[int], timeout: float,
              chat: bool) -> list[str]:
    """Runs one offer's echoes (or relays); returns the failures."""
    failures: list[str] = []
    rng = random.Random(name)

    def open_one():
        # No keepalive pings: a 16 MiB echo through a debug build may take
        # longer than a ping timeout; --timeout bounds each echo instead.
        return connect(url, extensions=[ClientPerMessageDeflateFactory(**kwargs)],
                       compression=None, max_size=None, ping_interval=None,
                       open_timeout=timeout, close_timeout=timeout)

    try:
        with contextlib.ExitStack() as stack:
            ws = stack.enter_context(open_one())
            sender = stack.enter_context(open_one()) if chat else ws
            problem = check_negotiation(ws, kwargs)
            negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
            print(f"  negotiated: {negotiated}")
            if problem:
                return [problem]
            for size in sizes:
                for kind in ("text", "binary"):
                    data = text_payload(size, rng) if kind == "text" else binary_payload(size, rng)
                    for fragmented in (False, True):
                        sender.send(fragments(data, rng) if fragmented else data)
                        echo = ws.recv(timeout=timeout)
                        if echo != data:
                            how = "fragmented" if fragmented else "whole"
                            got = f"{type(echo).__name__} of {len(echo)}"
                            failures.append(f"{kind} {size} B {how}: echo differs ({got})")
    except (OSError, TimeoutError, WebSocketException) as e:
        failures.append(f"connection failed: {type(e).__name__}: {e}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="echo endpoint, e.g. ws://127.0.0.1:9900/echo")
    parser.add_argument("--max-size", type=int, default=16 * MIB,
                        help="largest message in bytes (default 16 MiB)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the handshake or one echo")
    parser.add_argument("--chat", action="store_true",
                        help="the URL is a chat room: messages go from a second connection")
    args = parser.parse_args()
    sizes = [s for s in SIZES if s <= args.max_size]

    failed = 0
    for name, kwargs in OFFERS:
        start = time.monotonic()
        print(f"{name}:")
        failures = run_offer(args.url, name, kwargs, sizes, args.timeout, args.chat)
        for failure in failures:
            print(f"  FAIL {failure}")
        status = "FAIL" if failures else "ok"
        print(f"  {status} ({time.monotonic() - start:.1f} s)")
        failed += bool(failures)
    print(f"{len(OFFERS) - failed}/{len(OFFERS)} offers passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The narrow channel between the host and a sandboxed program: framing, plain data, quoting.

Messages are UTF-8 JSON objects, each preceded by its length as a 4-byte big-endian integer.
No pickle crosses: only ``None``, ``bool``, ``int``, ``float``, ``str``, lists and dicts with
string keys. An ``ImagePatch`` crosses as a handle, the one-key dict ``{"$patch": id}``, in API
arguments and API results only: the host decodes handles where the API takes a patch and never
in a program's return value.

Reading is defensive: a message is refused (``WireError``) when it is longer than the limit,
arrives after the deadline, is not UTF-8 JSON, is not an object, or nests deeper than
``MAX_DEPTH``; nothing a peer sends makes ``recv_msg`` raise anything else.

This module imports only the standard library: the zygote and its children load it.
"""
from __future__ import annotations

import json
import re
import socket
import struct
import time
from json.encoder import encode_basestring_ascii
from typing import Any, Callable

HANDLE_KEY = "$patch"
"""The key of the one-key dict that stands for an ImagePatch handle on the wire."""

MAX_DEPTH = 32
"""Deepest nesting of lists and dicts allowed in plain data (also stops self-referencing lists)."""

MAX_INT_BITS = 1024
"""Largest integer (in bits) that crosses the channel."""

_HEADER = struct.Struct(">I")
_BRACKETS = re.compile(rb'[\[\]{}"\\]')


class WireError(Exception):
    """A message could not be framed, read or converted to plain data."""


class PeerClosed(WireError):
    """The other end closed the channel before a whole message arrived."""


class WireTimeout(WireError):
    """The deadline passed before a whole message arrived."""


class ReservedKey(WireError):
    """Plain data from a program holds a dict keyed by ``HANDLE_KEY`` (only the sandbox makes those)."""


class TooLarge(WireError):
    """A value or message is larger than its limit; ``size`` and ``limit`` are in bytes."""

    def __init__(self, size: int, limit: int, exact: bool = True, what: str = "value") -> None:
        self.size, self.limit, self.exact = size, limit, exact
        more = "" if exact else "more than "
        super().__init__(f"{what} of {more}{size} bytes exceeds the limit (larger than {limit} bytes)")

    def sizes(self) -> str:
        """``"130 KB, limit 64 KB"`` (``"more than ..."`` when the walk stopped early)."""
        return f"{'' if self.exact else 'more than '}{kb(self.size)}, limit {kb(self.limit)}"


def kb(n: int) -> str:
    """``65536`` -> ``"64 KB"`` (at least 1 KB shown for anything above 0)."""
    return f"{max(1, round(n / 1024)) if n > 0 else 0} KB"


def encode_msg(msg: dict[str, Any]) -> bytes:
    """One message as bytes on the wire (``msg`` must already be plain data)."""
    data = json.dumps(msg, separators=(",", ":"), allow_nan=True).encode("utf-8")
    return _HEADER.pack(len(data)) + data


def send_msg(sock: socket.socket, msg: dict[str, Any], max_bytes: int | None = None) -> None:
    """Send one length-prefixed JSON message; ``TooLarge`` (nothing sent) above ``max_bytes``."""
    data = encode_msg(msg)
    if max_bytes is not None and len(data) - _HEADER.size > max_bytes:
        raise TooLarge(len(data) - _HEADER.size, max_bytes, what="message")
    sock.sendall(data)


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WireTimeout("the deadline passed while a message was arriving")
            sock.settimeout(remaining)
        try:
            chunk = sock.recv(min(n - got, 1 << 20))
        except (TimeoutError, socket.timeout):
            raise WireTimeout("the deadline passed while a message was arriving") from None
        if not chunk:
            raise PeerClosed("channel closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _depth_ok(data: bytes, limit: int) -> bool:
    """True when the JSON text ``data`` nests lists and objects at most ``limit`` deep
    (checked without parsing, so a deep document cannot exhaust the parser's stack)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return True
    depth, in_string, escaped = 0, False, False
    for match in _BRACKETS.finditer(data):
        char, start = match.group(), match.start()
        if in_string:
            if escaped and start == escaped:
                escaped = False
                continue
            if char == b"\\":
                escaped = start + 1  # the next character is escaped
            elif char == b'"':
                in_string = False
            continue
        if char == b'"':
            in_string, escaped = True, False
        elif char in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return False
        elif char in (b"]", b"}"):
            depth -= 1
    return True


def decode_msg(data: bytes) -> dict[str, Any]:
    """Parse one message body; ``WireError`` for anything that is not a plain JSON object."""
    if not _depth_ok(data, MAX_DEPTH + 2):
        raise WireError(f"malformed message: nested deeper than {MAX_DEPTH} levels")
    try:
        msg = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        raise WireError(f"malformed message: {type(exc).__name__}") from None
    if not isinstance(msg, dict):
        raise WireError("malformed message: not a JSON object")
    return msg


def recv_msg(sock: socket.socket, max_bytes: int, deadline: float | None = None) -> dict[str, Any]:
    """Read one message by ``deadline`` (``time.monotonic()``; None: no limit); refuse
    (``WireError``) one longer than ``max_bytes``, late, or not a JSON object."""
    (length,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if length > max_bytes:
        raise TooLarge(length, max_bytes, what="message")
    return decode_msg(_recv_exact(sock, length, deadline))


def _json_size(v: Any) -> int:
    """Bytes ``v`` (a number) takes in compact JSON."""
    return len(repr(v)) if type(v) is int else 24


def to_plain(value: Any, encode_other: Callable[[Any], Any] | None = None,
             max_bytes: int = 1 << 20, reserve_handles: bool = False) -> Any:
    """Convert ``value`` to JSON-able plain data, refusing (``WireError``) anything else.

    Tuples become lists and sets become sorted lists (or lists when unsortable).
    ``encode_other(obj)`` may turn a non-plain object into plain data (for example an
    ImagePatch into a handle), return ``NotImplemented`` to refuse it, or raise ``WireError``
    with its own message. The encoded size is tracked as the walk goes (strings exactly), so a
    value above ``max_bytes`` raises ``TooLarge`` with its size, measured up to 16 times the limit.
    With ``reserve_handles`` a dict with the key ``HANDLE_KEY`` raises ``ReservedKey`` (a program's
    own dict must not pass for an ImagePatch handle).
    """
    hard_cap = 16 * max_bytes
    used = [0]

    def spend(n: int) -> None:
        used[0] += n
        if used[0] > hard_cap:
            raise TooLarge(used[0], max_bytes, exact=False)

    def walk(v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
        if v is None or isinstance(v, bool):
            spend(5)
            return v
        if type(v) is int or type(v) is float:
            if type(v) is int and v.bit_length() > MAX_INT_BITS:
                raise WireError(f"integer with {v.bit_length()} bits is too large to pass")
            spend(_json_size(v) + 1)
            return v
        if type(v) is str:
            spend(len(v))  # at least one byte per character: refuse a huge string before encoding it
            spend(len(encode_basestring_ascii(v)) - len(v) + 1)
            return v
        if type(v) in (list, tuple):
            spend(2)
            return [walk(x, depth + 1) for x in v]
        if type(v) in (set, frozenset):
            spend(2)
            items = [walk(x, depth + 1) for x in v]
            try:
                return sorted(items)
            except TypeError:
                return items
        if type(v) is dict:
            spend(2)
            if reserve_handles and HANDLE_KEY in v:
                raise ReservedKey(f"the dict key {HANDLE_KEY!r} is reserved for ImagePatch handles")
            out = {}
            for k, x in v.items():
                if type(k) is not str:
                    raise WireError(f"dict key {k!r} is not a string")
                spend(len(encode_basestring_ascii(k)) + 2)
                out[k] = walk(x, depth + 1)
            return out
        if encode_other is not None:
            enc = encode_other(v)
            if enc is not NotImplemented:
                spend(len(json.dumps(enc, separators=(",", ":"))) + 1)
                return enc
        raise WireError(f"a value of type {type(v).__name__} is not plain data "
                        "(use bool, int, float, str, list, dict or ImagePatch)")

    plain = walk(value, 0)
    if used[0] > max_bytes:
        raise TooLarge(used[0], max_bytes)
    return plain


def from_plain(value: Any, decode_handle: Callable[[int], Any], _depth: int = 0) -> Any:
    """Rebuild a value received from the wire, turning ``{"$patch": id}`` into ``decode_handle(id)``.

    Use it only where the API takes (or gives) patches: a program's return value is plain data.
    """
    if _depth > MAX_DEPTH + 1:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    if type(value) is list:
        return [from_plain(x, decode_handle, _depth + 1) for x in value]
    if type(value) is dict:
        if len(value) == 1 and HANDLE_KEY in value:
            handle = value[HANDLE_KEY]
            if type(handle) is not int:
                raise WireError("malformed ImagePatch handle")
            return decode_handle(handle)
        return {k: from_plain(x, decode_handle, _depth + 1) for k, x in value.items()}
    return value


def quote_line(source: str, line: int | None, message: str) -> str:
    """Prefix ``message`` with the failing line of ``source``: ``line 3: `x = ...`: message``."""
    if line is None:
        return message
    lines = source.splitlines()
    if 1 <= line <= len(lines):
        text = lines[line - 1].strip()
        if len(text) > 160:
            text = text[:157] + "..."
        return f"line {line}: `{text}`: {message}"
    return f"line {line}: {message}"

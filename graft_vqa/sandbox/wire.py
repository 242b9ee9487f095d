"""The narrow channel between the host and a sandboxed program: framing, plain data, quoting.

Messages are UTF-8 JSON objects, each preceded by its length as a 4-byte big-endian integer.
No pickle crosses: only ``None``, ``bool``, ``int``, ``float``, ``str``, lists and dicts with
string keys. An ``ImagePatch`` crosses as a handle, the one-key dict ``{"$patch": id}``.

This module imports only the standard library: the zygote and its children load it.
"""
from __future__ import annotations

import json
import socket
import struct
from typing import Any, Callable

HANDLE_KEY = "$patch"
"""The key of the one-key dict that stands for an ImagePatch handle on the wire."""

MAX_DEPTH = 32
"""Deepest nesting of lists and dicts allowed in plain data (also stops self-referencing lists)."""

MAX_INT_BITS = 1024
"""Largest integer (in bits) that crosses the channel."""

_HEADER = struct.Struct(">I")


class WireError(Exception):
    """A message could not be framed, read or converted to plain data."""


class PeerClosed(WireError):
    """The other end closed the channel before a whole message arrived."""


def send_msg(sock: socket.socket, msg: dict[str, Any]) -> None:
    """Send one length-prefixed JSON message (``msg`` must already be plain data)."""
    data = json.dumps(msg, separators=(",", ":"), allow_nan=True).encode("utf-8")
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise PeerClosed("channel closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_msg(sock: socket.socket, max_bytes: int) -> dict[str, Any]:
    """Read one message; refuse (``WireError``) one longer than ``max_bytes`` or not a JSON object."""
    (length,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if length > max_bytes:
        raise WireError(f"message of {length} bytes exceeds the limit of {max_bytes} bytes")
    try:
        msg = json.loads(_recv_exact(sock, length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"malformed message: {exc}") from None
    if not isinstance(msg, dict):
        raise WireError("malformed message: not a JSON object")
    return msg


def to_plain(value: Any, encode_other: Callable[[Any], Any] | None = None,
             max_bytes: int = 1 << 20) -> Any:
    """Convert ``value`` to JSON-able plain data, refusing (``WireError``) anything else.

    Tuples become lists and sets become sorted lists (or lists when unsortable).
    ``encode_other(obj)`` may turn a non-plain object into plain data (for example an
    ImagePatch into a handle) or return ``NotImplemented`` to refuse it. The approximate
    encoded size is tracked as the walk goes, so a huge value is refused before it is encoded.
    """
    budget = [max_bytes]

    def spend(n: int) -> None:
        budget[0] -= n
        if budget[0] < 0:
            raise WireError(f"value larger than {max_bytes} bytes")

    def walk(v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
        if v is None or isinstance(v, bool):
            spend(5)
            return v
        if type(v) is int or type(v) is float:
            if type(v) is int and v.bit_length() > MAX_INT_BITS:
                raise WireError(f"integer with {v.bit_length()} bits is too large to pass")
            spend(24)
            return v
        if type(v) is str:
            spend(len(v) + 2)
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
            out = {}
            for k, x in v.items():
                if type(k) is not str:
                    raise WireError(f"dict key {k!r} is not a string")
                spend(len(k) + 3)
                out[k] = walk(x, depth + 1)
            return out
        if encode_other is not None:
            enc = encode_other(v)
            if enc is not NotImplemented:
                spend(24)
                return enc
        raise WireError(f"a value of type {type(v).__name__} is not plain data "
                        "(use bool, int, float, str, list, dict or ImagePatch)")

    return walk(value, 0)


def from_plain(value: Any, decode_handle: Callable[[int], Any]) -> Any:
    """Rebuild a value received from the wire, turning ``{"$patch": id}`` into ``decode_handle(id)``."""
    if type(value) is list:
        return [from_plain(x, decode_handle) for x in value]
    if type(value) is dict:
        if len(value) == 1 and HANDLE_KEY in value:
            handle = value[HANDLE_KEY]
            if type(handle) is not int:
                raise WireError("malformed ImagePatch handle")
            return decode_handle(handle)
        return {k: from_plain(x, decode_handle) for k, x in value.items()}
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

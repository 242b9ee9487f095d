"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for planner tests.

It serves ``POST /v1/chat/completions`` from a script of replies, one per request, and records
every request it received. A script entry is either a string (a 200 reply with that content) or
a :class:`Reply` (any status, headers, body, or a delay before answering). When the script runs
out the server answers 500 so a test that asks too often fails loudly.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer."""

    content: str | None = None  # assistant message text for a 200 reply
    status: int = 200  # HTTP status
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers (Retry-After)
    delay_s: float = 0.0  # wait before answering (to trigger client timeouts)
    body: dict[str, Any] | None = None  # raw JSON body for error replies


def _completion(content: str, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class ScriptedOpenAIServer:
    """Start with ``with ScriptedOpenAIServer([...]) as server:``; ``server.base_url`` ends in /v1."""

    def __init__(self, script: list[str | Reply]) -> None:
        self.script: list[Reply] = [r if isinstance(r, Reply) else Reply(content=r) for r in script]
        self.requests: list[dict[str, Any]] = []  # {"path", "headers" (lower-case names), "json"}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def user_messages(self) -> list[str]:
        """The user message of every chat request, in order."""
        return [m["content"] for r in self.requests for m in r["json"]["messages"] if m["role"] == "user"]

    def _next(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self.script:
                return self.script.pop(0)
        return Reply(status=500, body={"error": {"message": "script exhausted", "type": "server_error"}})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet tests
                return

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]}, {})
                else:
                    self._send(404, {"error": {"message": "not found"}}, {})

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                    return
                headers = {name.lower(): value for name, value in self.headers.items()}
                reply = server._next({"path": self.path, "headers": headers, "json": body})
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    if reply.status == 200:
                        self._send(200, _completion(reply.content or "", body.get("model", "")), reply.headers)
                    else:
                        payload = reply.body or {"error": {"message": f"scripted {reply.status}",
                                                           "type": "server_error"}}
                        self._send(reply.status, payload, reply.headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up

        return Handler

    def __enter__(self) -> "ScriptedOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

"""A real OpenAI-compatible LLM server (``llama_cpp.server``) on 127.0.0.1, for the benchmark and the opt-in test.

``llama-cpp-python[server]`` lives in its own virtual environment (``.venv-llm/`` at the repo root,
made by ``make llm-setup`` from ``bench/llm/requirements.txt``), never in the project's runtime. The
server uses the chat template stored in the GGUF file. Use it as a context manager; it is always
stopped on exit.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LLM_PYTHON = REPO / ".venv-llm" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` serving one GGUF file on 127.0.0.1."""

    def __init__(self, gguf: str | os.PathLike[str], *, alias: str = "local-model",
                 python: str | os.PathLike[str] = LLM_PYTHON, n_ctx: int = 4096, n_threads: int = 2,
                 log_path: str | os.PathLike[str] | None = None, start_timeout_s: float = 120.0) -> None:
        self.gguf = Path(gguf)
        self.alias = alias  # the model name clients send
        self.python = Path(python)
        self.n_ctx, self.n_threads = n_ctx, n_threads
        self.port = free_port()
        self.log_path = Path(log_path) if log_path else Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-{self.port}.log"
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _check(self) -> None:
        if not self.python.is_file():
            raise RuntimeError(f"{self.python} is missing: run `make llm-setup` (builds llama-cpp-python[server] "
                               "into .venv-llm/ from bench/llm/requirements.txt, about 11 minutes on 2 cores)")
        if not self.gguf.is_file():
            raise RuntimeError(f"model file {self.gguf} is missing: run `make llm-setup` "
                               "(or python bench/llm/fetch_model.py)")

    def start(self) -> "LlamaServer":
        self._check()
        command = [str(self.python), "-m", "llama_cpp.server", "--model", str(self.gguf),
                   "--model_alias", self.alias, "--host", "127.0.0.1", "--port", str(self.port),
                   "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
                   "--n_threads_batch", str(self.n_threads)]
        log = self.log_path.open("wb")
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"llama_cpp.server exited with {self._process.returncode}:\n{tail}")
            if self._ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {self.start_timeout_s} s; see {self.log_path}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as reply:
                return reply.status == 200 and bool(json.load(reply).get("data"))
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)  # uvicorn waits for a request in flight: do not wait for a slow one
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

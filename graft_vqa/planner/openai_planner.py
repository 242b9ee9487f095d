"""The LLM planner: any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama_cpp.server).

Settings come from the arguments, else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` /
``GRAFT_VQA_MODEL``, read when the planner is built. Rate limits (429), timeouts, connection
failures and 5xx replies are retried with bounded exponential backoff (``Retry-After`` honoured,
capped); everything else becomes a :class:`PlannerError` that says what to do.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any, Callable

import openai

from graft_vqa.planner import prompts
from graft_vqa.core.errors import PlannerError
from graft_vqa.planner.extract import extract_program
from graft_vqa.planner.program import Program
from graft_vqa.planner.structured import AUTO_ORDER, MODES, program_text, response_format

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini"
_RETRYABLE = (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError,
              openai.InternalServerError)


class OpenAIPlanner:
    """Asks an LLM for a program through the ``openai`` client."""

    deterministic = False  # asking again with feedback can give a different program

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,  # seconds per HTTP request
        max_retries: int = 4,  # retries after a 429, timeout, connection error or 5xx
        backoff_s: float = 1.0,  # first retry delay; doubles each retry
        max_backoff_s: float = 30.0,  # cap on any one delay, Retry-After included
        temperature: float = 0.0,  # sampling temperature of the first program (0: greedy)
        sample_temperature: float = 0.7,  # temperature of further samples (self-consistency)
        retry_temperature: float = 0.7,  # temperature of a re-ask after a failed attempt: greedy decoding
        # made a 0.5B model repeat its mistake however the feedback read (bench/README.md)
        max_tokens: int = 1024,  # cap on the reply length
        api_spec: str | None = None,  # ImagePatch API text; None reads api_spec/image_patch_api.md
        spec: str = "auto",  # API shown: "full", "core" (what RSVQA-style questions use), "auto" (core unless
        # the question talks about pixels, halves, distances or colours)
        fewshots: int | None = None,  # examples shown, chosen by similarity to the question; None: all of them
        context_tokens: int | None = None,  # the model's context: fewer examples when the prompt would not fit
        structured: str = "off",  # structured output: "off", "auto", "json_schema", "json_object"
        sleep: Callable[[float], None] = time.sleep,  # injectable for tests
    ) -> None:
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.model = model or os.environ.get("GRAFT_VQA_MODEL") or DEFAULT_MODEL
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and self.base_url is None:
            raise PlannerError("No OpenAI API key: set OPENAI_API_KEY, or point OPENAI_BASE_URL at a "
                               "local OpenAI-compatible server (vLLM, Ollama, llama_cpp.server).")
        if structured not in MODES:
            raise PlannerError(f"structured={structured!r}: use one of {', '.join(MODES)}.")
        if spec not in ("auto", "core", "full"):
            raise PlannerError(f"spec={spec!r}: use auto, core or full.")
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.temperature, self.sample_temperature, self.max_tokens = temperature, sample_temperature, max_tokens
        self.retry_temperature = retry_temperature
        self.spec_mode, self.fewshots, self.context_tokens = spec, fewshots, context_tokens
        self.structured = structured  # "auto" settles on a concrete mode at the first request
        self._sleep = sleep
        self.requests = 0  # chat requests sent so far (HTTP retries included), for benchmarks
        self.tokens = {"prompt": 0, "completion": 0}  # tokens the server reported so far
        self.api_spec = api_spec if api_spec is not None else prompts.api_spec_text()
        self._examples = prompts.fewshot_examples()
        self.planner_id = f"openai:{self.model}"
        settings = json.dumps([self.api_spec, temperature, sample_temperature, spec, fewshots, structured,
                               retry_temperature])
        self.prompt_version = f"{prompts.prompt_version()}-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"
        # local servers ignore the key, but the client insists on one
        self._client = openai.OpenAI(base_url=self.base_url, api_key=key or "not-needed",
                                     timeout=timeout, max_retries=0)

    @property
    def where(self) -> str:
        """The endpoint, for messages."""
        return self.base_url or "https://api.openai.com/v1"

    def system_prompt(self, question: str) -> str:
        """The system message for ``question``: rules, the API it needs, the examples that fit."""
        spec = prompts.trim_api_spec(self.api_spec, question, self.spec_mode)
        reply = prompts.render("reply_json" if self.structured != "off" else "reply_code")
        examples = prompts.select_examples(question, self._examples, self.fewshots)
        while True:
            text = prompts.render("system", api_spec=spec, examples=prompts.format_examples(examples),
                                  reply_format=reply.strip())
            if (self.context_tokens is None or not examples
                    or _estimate_tokens(text) + self.max_tokens <= self.context_tokens):
                return text
            examples = prompts.select_examples(question, examples, len(examples) - 1)  # drop the least similar

    def messages(self, question: str, feedback: str | None = None) -> list[dict[str, str]]:
        """The chat messages sent for ``question`` (with a feedback paragraph when re-asking)."""
        user = prompts.render("user", question=question.strip(), feedback=feedback or "")
        return [{"role": "system", "content": self.system_prompt(question)},
                {"role": "user", "content": user.strip()}]

    def plan(self, question: str, feedback: str | None = None, sample: int = 0) -> Program:
        """Ask the model for a program; ``feedback`` is the rendered error of a previous attempt;
        ``sample`` > 0 asks for another sampled program (``sample_temperature``, seed ``sample``); a
        first program with ``feedback`` (a re-ask) is sampled at ``retry_temperature``, seed 0.

        Raises :class:`PlannerError` when the server cannot be used and
        :class:`~graft_vqa.planner.extract.UnusableReplyError` when the reply holds no program.
        Validation is the caller's job (see :func:`plan_with_feedback`).
        """
        started = time.perf_counter()
        reply, tries = self._complete(self.messages(question, feedback), self._sampling(sample, feedback))
        source = extract_program(program_text(reply))
        meta: dict[str, Any] = {"model": self.model, "base_url": self.where, "http_tries": tries,
                                "prompt_version": self.prompt_version, "reply": reply, "sample": sample,
                                "structured": self.structured, "seconds": round(time.perf_counter() - started, 3)}
        return Program(source=source, planner=self.planner_id, question=question, meta=meta)

    def _sampling(self, sample: int, feedback: str | None) -> dict[str, Any]:
        """Temperature (and seed, when sampled) of one request: greedy first, sampled samples and re-asks."""
        if sample:
            return {"temperature": self.sample_temperature, "seed": sample}
        if feedback is not None and self.retry_temperature != self.temperature:
            return {"temperature": self.retry_temperature, "seed": 0}
        return {"temperature": self.temperature}

    def _request(self, messages: list[dict[str, str]], sampling: dict[str, Any]) -> Any:
        """One chat request; in structured "auto" mode, settles on the first format the server takes."""
        options: dict[str, Any] = dict(sampling)
        modes = AUTO_ORDER if self.structured == "auto" else (self.structured,)
        for mode in modes:
            format_ = response_format(mode)
            try:
                response = self._client.chat.completions.create(
                    model=self.model, messages=messages, max_tokens=self.max_tokens,  # type: ignore[arg-type]
                    **({"response_format": format_} if format_ else {}), **options)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if self.structured != "auto":
                    raise
                log.info("the server does not take response_format %s (%s)", mode, exc)
                continue
            if self.structured == "auto":
                log.info("structured output: using response_format %s", mode)
                self.structured = mode
            return response
        log.info("structured output: the server takes no response_format; plain text replies")
        self.structured = "off"
        return self._client.chat.completions.create(model=self.model, messages=messages,  # type: ignore[arg-type]
                                                    max_tokens=self.max_tokens, **options)

    def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any]) -> tuple[str, int]:
        """Send the chat request with bounded retries; return (reply text, tries used)."""
        for attempt in range(self.max_retries + 1):
            self.requests += 1
            try:
                response = self._request(messages, sampling)
            except _RETRYABLE as exc:
                if attempt == self.max_retries:
                    raise self._give_up(exc, attempt + 1) from None
                delay = self._delay(exc, attempt)
                log.warning("LLM request failed (%s); retry %d/%d in %.2f s",
                            type(exc).__name__, attempt + 1, self.max_retries, delay)
                self._sleep(delay)
                continue
            except openai.APIStatusError as exc:
                raise self._status_error(exc) from None
            usage = getattr(response, "usage", None)
            if usage is not None:
                self.tokens["prompt"] += usage.prompt_tokens or 0
                self.tokens["completion"] += usage.completion_tokens or 0
            if not response.choices:
                return "", attempt + 1
            return response.choices[0].message.content or "", attempt + 1
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, exc: Exception, attempt: int) -> float:
        """Exponential backoff, or the server's Retry-After, capped at max_backoff_s."""
        delay = self.backoff_s * (2 ** attempt)
        response = getattr(exc, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        if header:
            try:
                delay = float(header)
            except ValueError:
                pass
        return max(0.0, min(delay, self.max_backoff_s))

    def _give_up(self, exc: Exception, tries: int) -> PlannerError:
        """The error raised once retries are spent."""
        if isinstance(exc, openai.RateLimitError):
            hint = "the server keeps rate-limiting; wait, or lower the request rate"
        elif isinstance(exc, openai.APITimeoutError):
            hint = f"no reply within {self.timeout} s; is the model loaded? raise timeout= if it is slow"
        elif isinstance(exc, openai.APIConnectionError):
            hint = f"could not connect; is the server at {self.where} running?"
        else:
            hint = f"the server at {self.where} keeps failing ({exc}); check its logs"
        return PlannerError(f"LLM planner gave up after {tries} tries: {hint}.")

    def _status_error(self, exc: openai.APIStatusError) -> PlannerError:
        """A PlannerError for a non-retryable HTTP status."""
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            hint = "the server refused the API key; check OPENAI_API_KEY"
        elif isinstance(exc, openai.NotFoundError):
            hint = (f"model {self.model!r} or the chat endpoint was not found at {self.where}; "
                    "check GRAFT_VQA_MODEL and OPENAI_BASE_URL (it usually ends in /v1)")
        else:
            hint = f"the server at {self.where} rejected the request: {exc}"
        return PlannerError(f"LLM planner failed (HTTP {exc.status_code}): {hint}.")


def _estimate_tokens(text: str) -> int:
    """A cautious token estimate for English and code (about 3.5 characters a token)."""
    return int(len(text) / 3.5) + 1

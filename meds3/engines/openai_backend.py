"""OpenAI-compatible server backend: generation against a running vLLM (or SGLang, TGI, ...) server
over the OpenAI *completions* API (``POST {base_url}/completions``).

Each :class:`GenerationRequest` is one HTTP request (``n``, ``seed``, ``stop``, ``temperature``,
``top_p``, ``max_tokens``), sent from a thread pool of ``max_concurrency`` workers; the server
batches them. Besides the OpenAI fields, requests carry the vLLM extensions meds3 needs
(``return_token_ids``, ``ignore_eos``, ``include_stop_str_in_output``, ``add_special_tokens``,
``skip_special_tokens``); a server that ignores ``return_token_ids`` gets its samples' token ids
by re-encoding their text (logged once: then ids are not exact around stop strings and EOS).

LoRA adapters are served by name: ``vllm serve <base> --enable-lora --lora-modules
policy=/path/to/adapter`` serves the adapter as model ``policy``. A request's ``adapter`` (a path,
as everywhere in meds3) is looked up in the ``adapters`` option (path or name -> served name),
then among the server's models (``GET /v1/models``: the adapter whose ``root`` is that path, or
whose ``id`` is that name); with ``load_adapters`` an adapter the server lacks is loaded at run time.

Prompts: with a local ``tokenizer`` (a directory or alias of the served model's tokenizer),
prompts are tokenized here and sent as token ids, exactly as the other backends see them, and
:meth:`chat_prompt` renders the same text as the transformers engine. Without one, the server's
own ``/tokenize`` and ``/detokenize`` (vLLM) stand in (:class:`ServerTokenizer`).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import json
import logging
import os
import random
import threading
import time
from typing import Any, Callable, Sequence

from meds3.engines.base import Engine, register_backend
from meds3.engines.types import GenerationRequest, GenerationResult, Sample

logger = logging.getLogger(__name__)
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
INSTALL_HINT = "the openai backend needs the openai package: pip install 'meds3[openai]'"
RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))  # rate limits, timeouts, server faults
MAX_BACKOFF_S = 30.0


class ServerError(RuntimeError):
    """The server failed a request after every retry, or answered something that is not a
    completion; the message names the URL and the HTTP status or what is wrong."""


def _import_openai():
    try:
        import openai
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return openai


@register_backend("openai")
class OpenAIEngine(Engine):
    """Generation through an OpenAI-compatible completions server.

    Args:
        model: the served model name (``--served-model-name``, or the path the server was
            started with).
        base_url: the API root, ending in ``/v1`` (default: env ``OPENAI_BASE_URL``, else
            ``http://127.0.0.1:8000/v1``).
        api_key: bearer token (default: env ``OPENAI_API_KEY``, else ``"EMPTY"``, as vLLM expects
            when started without ``--api-key``).
        tokenizer: local directory or alias of the served model's tokenizer (recommended); None
            uses the server's ``/tokenize`` (:class:`ServerTokenizer`).
        adapters: ``{adapter path or name: served model name}`` for LoRA adapters whose path on
            the server differs from the one requests give.
        load_adapters: load an adapter directory the server does not serve yet (vLLM
            ``POST /v1/load_lora_adapter``; the server needs ``--enable-lora`` and the environment
            variable ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``, and must see the same path): how an
            evolve loop serves each round's new adapter from one server.
        max_concurrency: requests in flight at once.
        max_retries: retries of a request after a connection error, a timeout, HTTP 408, 429 or
            5xx, waiting ``retry_backoff * 2**k`` seconds (at most 30) before retry ``k``.
        retry_backoff: first wait, in seconds.
        timeout: seconds one HTTP request may take.
        seed: engine seed; requests without a seed draw one from it.
        trust_remote_code: run Python code shipped with the tokenizer when loading it.

    Raises:
        ValueError: a bad option value.
        ImportError: the openai package is missing.
    """

    def __init__(self, model: Any, *, base_url: str | None = None, api_key: str | None = None,
                 tokenizer: Any = None, adapters: dict[str, str] | None = None, max_concurrency: int = 16,
                 load_adapters: bool = False, max_retries: int = 4, retry_backoff: float = 0.5,
                 timeout: float = 600.0, seed: int = 0, trust_remote_code: bool = False):
        if max_concurrency < 1 or max_retries < 0 or retry_backoff < 0 or not timeout > 0:
            raise ValueError(f"openai engine: need max_concurrency >= 1, max_retries >= 0, retry_backoff >= 0 "
                             f"and timeout > 0; got {max_concurrency}, {max_retries}, {retry_backoff}, {timeout}")
        openai = _import_openai()
        self._openai = openai
        self.model_path = str(model)
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        # max_retries=0: the retries are ours (configurable backoff, errors naming URL and status)
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key, timeout=timeout, max_retries=0)
        self.max_retries, self.retry_backoff = max_retries, retry_backoff
        self.adapters = {os.path.abspath(k) if os.path.exists(k) else k: v for k, v in (adapters or {}).items()}
        self.load_adapters = load_adapters
        self._served: list[Any] | None = None  # GET /v1/models, read when an adapter is first needed
        self._adapter_lock = threading.Lock()
        if tokenizer is None or not isinstance(tokenizer, (str, os.PathLike)):
            self.tokenizer = tokenizer or ServerTokenizer(self)
        else:
            from transformers import AutoTokenizer

            from meds3.engines.models import resolve_model

            self.tokenizer = AutoTokenizer.from_pretrained(str(resolve_model(tokenizer)),
                                                           trust_remote_code=trust_remote_code)
        self.local_tokenizer = not isinstance(self.tokenizer, ServerTokenizer)
        eos = getattr(self.tokenizer, "eos_token_id", None)
        self.eos_ids = {eos} if eos is not None else set()
        self._rng = random.Random(seed)
        self._tokenizer_lock = threading.Lock()  # replies without token ids are re-encoded in worker threads
        self._pool = cf.ThreadPoolExecutor(max_concurrency, thread_name_prefix="meds3-openai")
        self._futures: dict[cf.Future, int] = {}
        self._tickets = itertools.count()
        self._warned_ids = False

    # ------------------------------------------------------------ generation
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Send every request (``max_concurrency`` at a time); see :meth:`Engine.generate`.

        Raises:
            ValueError: the server refused a request (HTTP 4xx other than 408/429), e.g. a prompt
                longer than its context, or an adapter it does not serve.
            ServerError: a request still failed after ``max_retries`` retries, or a bad response.
        """
        prepared = [self._prepare(req) for req in requests]  # an unserved adapter fails before any is sent
        futures = [self._pool.submit(self._send, *prep) for prep in prepared]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()

    def submit(self, requests: Sequence[GenerationRequest]) -> list[int]:
        """Start sending ``requests``; see :meth:`Engine.submit`. Adapters are resolved first, so
        an adapter the server does not serve raises ``ValueError`` with none queued."""
        prepared = [self._prepare(req) for req in requests]
        tickets = [next(self._tickets) for _ in prepared]
        for ticket, prep in zip(tickets, prepared):
            self._futures[self._pool.submit(self._send, *prep)] = ticket
        return tickets

    def poll(self) -> list[tuple[int, GenerationResult]]:
        """Wait until a submitted request is answered; return every answered one. On an error the
        requests not yet sent are cancelled and every ticket is dropped."""
        if not self._futures:
            return []
        done, _ = cf.wait(list(self._futures), return_when=cf.FIRST_COMPLETED)
        try:
            return [(self._futures.pop(f), f.result()) for f in done]
        except BaseException:
            for f in self._futures:
                f.cancel()
            self._futures.clear()
            raise

    def pending(self) -> int:
        """Submitted requests not yet returned by :meth:`poll`."""
        return len(self._futures)

    def close(self) -> None:
        """Stop the worker threads (after the requests in flight) and close the HTTP client."""
        for f in self._futures:
            f.cancel()
        self._futures.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()

    # ------------------------------------------------------------ one request
    def _prepare(self, req: GenerationRequest) -> tuple[GenerationRequest, list[int] | None, int, dict[str, Any]]:
        """The request's prompt ids, sample count and request body, made in the caller's thread: a
        transformers tokenizer is not safe to share between threads, and seeds drawn here follow
        the order of submission."""
        p = req.params
        ids = req.prompt_token_ids
        if ids is None and self.local_tokenizer:
            ids = self.encode(req.prompt)
        limit = self._server_context()
        if ids is not None and limit is not None and len(ids) + p.max_new_tokens > limit:
            raise ValueError(f"request {req.request_id!r}: prompt ({len(ids)} tokens) + max_new_tokens "
                             f"({p.max_new_tokens}) exceeds the server's max_model_len {limit} "
                             f"({self.base_url}/models)")
        seed = p.seed if p.seed is not None else self._rng.getrandbits(31)
        n = 1 if p.temperature == 0 else req.n  # vLLM refuses n > 1 when greedy: repeat the one sample
        body = dict(model=self._served_name(req.adapter), prompt=ids if ids is not None else req.prompt, n=n,
                    temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_new_tokens, seed=seed,
                    extra_body=dict(return_token_ids=True, add_special_tokens=False, skip_special_tokens=True,
                                    ignore_eos=p.ignore_eos, include_stop_str_in_output=p.include_stop_str_in_output))
        if p.stop:  # omitted, not null, when empty: some servers refuse a null stop
            body["stop"] = list(p.stop)
        return req, ids, n, body

    def _send(self, req: GenerationRequest, ids: list[int] | None, n: int, body: dict[str, Any]) -> GenerationResult:
        """POST one prepared request (in a worker thread) and read its reply."""
        reply = self._call(f"request {req.request_id!r}", "/completions",
                           lambda: self.client.completions.create(**body))
        return self._result(req, ids, n, reply)

    def _result(self, req: GenerationRequest, ids: list[int] | None, n: int, reply: Any) -> GenerationResult:
        url = f"{self.base_url}/completions"
        choices = getattr(reply, "choices", None)
        if not isinstance(choices, list) or len(choices) != n:
            got = len(choices) if isinstance(choices, list) else type(reply).__name__
            raise ServerError(f"{url}: request {req.request_id!r} asked for {n} choices, the reply has {got}")
        samples = [self._sample(req, c, url) for c in sorted(choices, key=lambda c: getattr(c, "index", 0) or 0)]
        samples += [Sample(**vars(samples[0])) for _ in range(req.n - n)]
        if ids is None:
            ids = getattr(choices[0], "prompt_token_ids", None) or self.encode(req.prompt)
        n_prompt = len(ids)
        details = getattr(getattr(reply, "usage", None), "prompt_tokens_details", None)
        served_cached = int(getattr(details, "cached_tokens", 0) or 0)  # vLLM: --enable-prompt-tokens-details
        cached = min(served_cached + (req.n - n) * n_prompt, req.n * n_prompt)
        return GenerationResult(request_id=req.request_id, prompt_token_ids=list(ids), samples=samples,
                                prompt_tokens=n_prompt, prompt_tokens_computed=req.n * n_prompt - cached,
                                prompt_tokens_cached=cached)

    def _sample(self, req: GenerationRequest, choice: Any, url: str) -> Sample:
        text, reason = getattr(choice, "text", None), getattr(choice, "finish_reason", None)
        if not isinstance(text, str) or reason not in ("stop", "length"):
            raise ServerError(f"{url}: request {req.request_id!r}: a choice without text or with finish_reason "
                              f"{reason!r} (expected 'stop' or 'length')")
        token_ids = getattr(choice, "token_ids", None)
        if token_ids is None:
            if not self._warned_ids:
                logger.warning("%s does not return token_ids (a vLLM extension): token ids are re-encoded text",
                               url)
                self._warned_ids = True
            with self._tokenizer_lock:
                token_ids = self.encode(text)
        stop = getattr(choice, "stop_reason", None)  # vLLM: the stop string, a stop token id, or None for EOS
        if reason == "length":
            finish, stop = "length", None
        elif isinstance(stop, str):
            finish = "stop"
        elif hasattr(choice, "stop_reason") or not req.params.stop or (token_ids and token_ids[-1] in self.eos_ids):
            finish, stop = "eos", None
        else:  # a server that does not say which stop string matched: known only when there is one
            finish, stop = "stop", req.params.stop[0] if len(req.params.stop) == 1 else None
        return Sample(text=text, token_ids=[int(t) for t in token_ids], finish_reason=finish, stop_reason=stop)

    def _models(self, refresh: bool = False) -> list[Any]:
        """The server's models (``GET /v1/models``), listed once unless ``refresh``."""
        with self._adapter_lock:
            if refresh or self._served is None:
                listing = self._call("model list", "/models", lambda: self.client.models.list())
                self._served = list(getattr(listing, "data", None) or [])
            return self._served

    def _server_context(self) -> int | None:
        """The served model's context length (vLLM lists ``max_model_len``); None when not said."""
        for m in self._models():
            if getattr(m, "id", None) == self.model_path:
                return getattr(m, "max_model_len", None)
        return None

    def _served_name(self, adapter: str | None) -> str:
        """The served model name to send a request for ``adapter`` to (``model`` when None): the
        ``adapters`` option, else the server's models (listed again on a miss: an adapter may have
        been loaded since), else, with ``load_adapters``, the adapter loaded now.

        Raises:
            ValueError: the server serves no such adapter (listing what it serves).
        """
        if adapter is None:
            return self.model_path
        key = os.path.abspath(adapter) if os.path.exists(adapter) else adapter
        if key in self.adapters:
            return self.adapters[key]
        for refresh in (False, True):
            for m in self._models(refresh):
                if key in (getattr(m, "id", None), getattr(m, "root", None)):
                    self.adapters[key] = m.id
                    return m.id
        with self._adapter_lock:
            if key in self.adapters:  # loaded by another thread meanwhile
                return self.adapters[key]
            if self.load_adapters and os.path.isdir(key):
                name = "meds3-" + hashlib.sha256(key.encode()).hexdigest()[:12]
                self._call(f"loading adapter {adapter!r}", "/load_lora_adapter", lambda: self.client.post(
                    "/load_lora_adapter", body={"lora_name": name, "lora_path": key}, cast_to=object))
                self.adapters[key] = name
                return name
        served = ", ".join(f"{m.id} ({getattr(m, 'root', '?')})" for m in self._served)
        raise ValueError(f"{self.base_url}/models: no served model for adapter {adapter!r}; the server serves: "
                         f"{served}. Start it with --enable-lora --lora-modules NAME={key}, map the adapter "
                         "with engine option adapters: {path: NAME}, or set load_adapters: true")

    def _call(self, what: str, path: str, send: Callable[[], Any]) -> Any:
        """``send()`` with retries on connection errors, timeouts, HTTP 408, 429 and 5xx.

        Raises:
            ValueError: any other HTTP error status (the request cannot be served).
            ServerError: still failing after the last retry (naming URL, status and message).
        """
        openai, url = self._openai, self.base_url + path
        for attempt in range(self.max_retries + 1):
            try:
                return send()
            except openai.APIStatusError as exc:
                status, error = exc.status_code, f"HTTP {exc.status_code}: {_message(exc)}"
                if status == 404 and path == "/completions":  # vLLM's answer to an unknown model name
                    error += f"; check the served model name (GET {self.base_url}/models lists them)"
                elif status == 404 and path == "/load_lora_adapter":
                    error += ("; start the server with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True "
                              "to load adapters at run time")
                if status not in RETRY_STATUS:
                    raise ValueError(f"{url}: {what}: {error}") from exc
            except openai.APIConnectionError as exc:  # includes APITimeoutError
                error = f"{type(exc).__name__}: {exc}"
            except json.JSONDecodeError as exc:  # e.g. a proxy's HTML error page with status 200
                raise ServerError(f"{url}: {what}: the reply is not JSON: {exc.doc[:200]!r}") from exc
            if attempt < self.max_retries:
                wait = min(self.retry_backoff * 2**attempt, MAX_BACKOFF_S)
                logger.warning("%s: %s: %s; retry %d/%d in %.2fs", url, what, error, attempt + 1,
                               self.max_retries, wait)
                time.sleep(wait)
        raise ServerError(f"{url}: {what} failed after {self.max_retries + 1} attempts; last: {error}")


def _message(exc: Any) -> str:
    """The server's error message (OpenAI ``{"error": {"message": ...}}``, vLLM's, or the body)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        return str(inner.get("message", inner) if isinstance(inner, dict) else inner)
    return str(getattr(exc, "message", exc))


class ServerTokenizer:
    """The parts of a transformers tokenizer meds3 uses, served by vLLM's ``/tokenize`` and
    ``/detokenize`` (at the server root, beside ``/v1``): for servers whose tokenizer is not on
    this machine. ``decode`` keeps special tokens (``/detokenize`` has no switch for them) and
    ``eos_token_id`` is unknown (None)."""

    eos_token_id = None

    def __init__(self, engine: OpenAIEngine):
        self.engine = engine
        self.root = engine.base_url[: -len("/v1")] if engine.base_url.endswith("/v1") else engine.base_url

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.root + path
        reply = self.engine._call("tokenizer", path, lambda: self.engine.client.post(
            url, body={"model": self.engine.model_path, **body}, cast_to=object))
        if not isinstance(reply, dict):
            raise ServerError(f"{url}: expected a JSON object, got {str(reply)[:200]!r}; the server has no "
                              "/tokenize: give the engine a local tokenizer (engine option tokenizer: PATH)")
        return reply

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``."""
        return [int(t) for t in self._post("/tokenize", {"prompt": text, "add_special_tokens": add_special_tokens})
                ["tokens"]]

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``token_ids`` (special tokens kept whatever ``skip_special_tokens`` says)."""
        return str(self._post("/detokenize", {"tokens": [int(t) for t in token_ids]})["prompt"])

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = True) -> Any:
        """The server's rendering of ``messages`` (its chat template), as text or token ids."""
        ids = self._post("/tokenize", {"messages": messages, "add_generation_prompt": add_generation_prompt})["tokens"]
        return list(ids) if tokenize else self.decode(ids)


"""The ``openai`` backend: request mapping, retries, timeouts and bad replies against a scripted
in-process HTTP server; then (marked ``vllm`` and ``slow``) a real vLLM server (tests/openai_server.py).

The engine contract (tests/test_engine_contract.py) also runs on the real server.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("openai", reason="the openai backend needs the openai package (meds3[openai])")

from meds3.config import ConfigError  # noqa: E402 -- after the skip: these import the backend's deps
from meds3.engines import GenerationRequest, SamplingParams, build_engine  # noqa: E402
from meds3.engines.base import OPENAI_OPTIONS, check_engine_options, engine_option_names  # noqa: E402
from meds3.engines.openai_backend import OpenAIEngine, ServerError  # noqa: E402


def choice(index=0, text="ok", token_ids=(5, 6), finish="length", **extra):
    return {"index": index, "text": text, "finish_reason": finish, "token_ids": list(token_ids),
            "prompt_token_ids": [1, 2, 3], "stop_reason": None, **extra}


def completion(*choices, cached=None):
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
            "choices": list(choices) or [choice()], "usage": usage}


class FakeServer:
    """An HTTP server answering POSTs from a script: each takes the next ``(status, body, delay_s)``
    (the last one repeats); a GET (``/v1/models``) gets ``models``. Records every request's path,
    headers and JSON body."""

    def __init__(self):
        self.script: list[tuple[int, object, float]] = [(200, completion(), 0.0)]
        self.models = {"object": "list", "data": [{"id": "served-policy", "object": "model", "root": "/base"}]}
        self.requests: list[tuple[str, dict, dict]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: dict | None):
                with fake.lock:
                    fake.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    if body is None:
                        status, reply, delay = 200, fake.models, 0
                    else:
                        status, reply, delay = fake.script.pop(0) if len(fake.script) > 1 else fake.script[0]
                time.sleep(delay)
                data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client timed out and hung up
                    pass

            def do_POST(self):  # noqa: N802 -- http.server's name
                self._answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

            def do_GET(self):  # noqa: N802
                self._answer(None)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def posts(self):
        """The POSTed requests (the engine also GETs /v1/models for the context length)."""
        return [r for r in self.requests if r[2] is not None]

    def bodies(self, path="/v1/completions"):
        return [body for p, _, body in self.requests if p == path]


class CharTokenizer:
    """One token per character (``ord``), EOS 0: enough for prompts and re-encoded replies."""

    eos_token_id = 0

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if i or not skip_special_tokens)


@pytest.fixture
def fake():
    server = FakeServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def engine_for(fake, **options) -> OpenAIEngine:
    options = {"tokenizer": CharTokenizer(), "retry_backoff": 0.001, "max_retries": 2, **options}
    return build_engine("served-policy", backend="openai", base_url=fake.base_url, **options)


def test_request_maps_sampling_params(fake):
    fake.script = [(200, completion(choice(0, "a", (7,)), choice(1, "b", (8, 9))), 0)]
    eng = engine_for(fake, api_key="sk-test")
    params = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=12, stop=["Step 2:"], seed=5,
                            include_stop_str_in_output=True, ignore_eos=True)
    [result] = eng.generate([GenerationRequest(prompt="hi", n=2, params=params, request_id="q1")])
    [(path, headers, body)] = fake.posts()
    assert path == "/v1/completions" and headers["authorization"] == "Bearer sk-test"
    assert body == {"model": "served-policy", "prompt": [104, 105], "n": 2, "temperature": 0.7, "top_p": 0.9,
                    "max_tokens": 12, "seed": 5, "stop": ["Step 2:"], "return_token_ids": True,
                    "add_special_tokens": False, "skip_special_tokens": True, "ignore_eos": True,
                    "include_stop_str_in_output": True}
    assert result.request_id == "q1" and result.prompt_token_ids == [104, 105] and result.prompt_tokens == 2
    assert [(s.text, s.token_ids, s.finish_reason) for s in result.samples] == [("a", [7], "length"),
                                                                               ("b", [8, 9], "length")]
    assert (result.prompt_tokens_computed, result.prompt_tokens_cached) == (4, 0)
    eng.close()


def test_greedy_n_is_one_sample_repeated_and_unseeded_requests_draw_seeds(fake):
    fake.script = [(200, completion(choice(0, "g", (4,)), cached=1), 0)]
    eng = engine_for(fake, seed=7)
    [result] = eng.generate([GenerationRequest(prompt_token_ids=[9, 9, 9], n=3,
                                               params=SamplingParams(temperature=0.0, max_new_tokens=4))])
    eng.generate([GenerationRequest(prompt="x", params=SamplingParams(max_new_tokens=4))])
    first, second = fake.bodies()
    assert first["n"] == 1 and first["prompt"] == [9, 9, 9] and "stop" not in first
    assert [s.token_ids for s in result.samples] == [[4]] * 3
    # 1 position cached by the server + 2 repeated samples' whole prompts
    assert (result.prompt_tokens_cached, result.prompt_tokens_computed) == (7, 2)
    again = engine_for(fake, seed=7)
    again.generate([GenerationRequest(prompt_token_ids=[9, 9, 9], params=SamplingParams(temperature=0.0))])
    assert fake.bodies()[2]["seed"] == first["seed"] != second["seed"]


@pytest.mark.parametrize("extra, stop, want", [
    ({"stop_reason": "Step 2:"}, ["x", "Step 2:"], ("stop", "Step 2:")),
    ({"stop_reason": None}, ["x"], ("eos", None)),  # vLLM: stop with no stop_reason is EOS
    ({"stop_reason": 128001}, ["x"], ("eos", None)),  # a stop token id from generation_config
    ({"stop_reason": "__absent__"}, ["x"], ("stop", "x")),  # a server that does not say: the one stop string
    ({"stop_reason": "__absent__"}, [], ("eos", None)),
])
def test_finish_reasons(fake, extra, stop, want):
    c = choice(finish="stop", **extra)
    if extra["stop_reason"] == "__absent__":
        del c["stop_reason"]
    fake.script = [(200, completion(c), 0)]
    [result] = engine_for(fake).generate([GenerationRequest(prompt="q", params=SamplingParams(stop=stop))])
    assert (result.samples[0].finish_reason, result.samples[0].stop_reason) == want


def test_reply_without_token_ids_is_re_encoded(fake):
    c = choice(text="abc")
    del c["token_ids"], c["prompt_token_ids"]
    fake.script = [(200, completion(c), 0)]
    [result] = engine_for(fake).generate([GenerationRequest(prompt="hi")])
    assert result.samples[0].token_ids == [97, 98, 99] and result.prompt_token_ids == [104, 105]


def test_retries_429_and_5xx_then_succeeds(fake):
    fake.script = [(429, {"error": {"message": "slow down"}}, 0), (503, {"error": {"message": "busy"}}, 0),
                   (200, completion(), 0)]
    [result] = engine_for(fake).generate([GenerationRequest(prompt="q")])
    assert len(fake.posts()) == 3 and result.samples[0].token_ids == [5, 6]


def test_last_retry_names_url_and_status(fake):
    fake.script = [(500, {"error": {"message": "engine dead"}}, 0)]
    with pytest.raises(ServerError) as err:
        engine_for(fake, max_retries=2).generate([GenerationRequest(prompt="q", request_id="r7")])
    assert str(err.value) == (f"{fake.base_url}/completions: request 'r7' failed after 3 attempts; "
                              "last: HTTP 500: engine dead")
    assert len(fake.posts()) == 3


def test_client_error_is_not_retried(fake):
    fake.script = [(400, {"error": {"message": "prompt too long"}}, 0)]
    with pytest.raises(ValueError, match=r"/v1/completions: request None: HTTP 400: prompt too long$"):
        engine_for(fake).generate([GenerationRequest(prompt="q")])
    assert len(fake.posts()) == 1


def test_timeout_is_retried_then_reported(fake):
    fake.script = [(200, completion(), 1.0)]
    with pytest.raises(ServerError, match=r"failed after 2 attempts; last: APITimeoutError"):
        engine_for(fake, timeout=0.2, max_retries=1).generate([GenerationRequest(prompt="q")])
    assert len(fake.posts()) == 2


def test_connection_refused_is_retried_then_reported(fake):
    url = fake.base_url
    fake.httpd.shutdown()
    fake.httpd.server_close()
    eng = build_engine("m", backend="openai", base_url=url, tokenizer=CharTokenizer(), max_retries=1,
                       retry_backoff=0.001)
    # the first call is the model list (the served context length)
    with pytest.raises(ServerError, match=rf"^{url}/models: model list failed after 2 attempts; "
                                          "last: APIConnectionError"):
        eng.generate([GenerationRequest(prompt="q")])


@pytest.mark.parametrize("reply, message", [
    (completion(choice(0), choice(1)), "asked for 1 choices, the reply has 2"),
    (completion(choice(finish="content_filter")), "finish_reason 'content_filter'"),
    (completion(choice(text=None)), "a choice without text"),
    (b"<html>gateway</html>", "the reply is not JSON: '<html>gateway</html>'"),
])
def test_bad_replies_raise_clear_errors(fake, reply, message):
    fake.script = [(200, reply, 0)]
    with pytest.raises(ServerError, match=rf"^{fake.base_url}/completions: request 'r1'.*{message}"):
        engine_for(fake).generate([GenerationRequest(prompt="q", request_id="r1")])


def test_adapters_map_to_served_names(fake, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    fake.models["data"].append({"id": "policy", "object": "model", "root": str(adapter)})
    eng = engine_for(fake)
    eng.generate([GenerationRequest(prompt="q", adapter=str(adapter))])  # found by root in /v1/models
    eng.generate([GenerationRequest(prompt="q", adapter="policy")])  # by served name
    assert [p for p, _, _ in fake.requests] == ["/v1/models", "/v1/completions", "/v1/completions"]
    assert [b["model"] for b in fake.bodies()] == ["policy", "policy"]
    with pytest.raises(ValueError, match=r"no served model for adapter '/elsewhere'; the server serves: "
                                         r"served-policy \(/base\), policy \("):
        eng.submit([GenerationRequest(prompt="q", adapter="/elsewhere")])
    assert eng.pending() == 0 and fake.requests[-1][0] == "/v1/models"  # listed again before refusing
    mapped = engine_for(fake, adapters={str(adapter): "mine"})
    mapped.generate([GenerationRequest(prompt="q", adapter=str(adapter))])
    assert fake.bodies()[-1]["model"] == "mine"


def test_load_adapters_loads_an_unserved_adapter_once(fake, tmp_path):
    adapter = tmp_path / "round1"
    adapter.mkdir()
    fake.script = [(200, "Success", 0), (200, completion(), 0)]
    eng = engine_for(fake, load_adapters=True)
    eng.generate([GenerationRequest(prompt="q", adapter=str(adapter))] * 2)
    paths = [p for p, _, _ in fake.requests]
    assert paths == ["/v1/models", "/v1/models", "/v1/load_lora_adapter", "/v1/completions", "/v1/completions"]
    name = fake.requests[2][2]["lora_name"]
    assert fake.requests[2][2] == {"lora_name": name, "lora_path": str(adapter)} and name.startswith("meds3-")
    assert [b["model"] for b in fake.bodies()] == [name, name]


def test_requests_past_the_served_context_are_refused_before_sending(fake):
    fake.models["data"][0]["max_model_len"] = 10
    eng = engine_for(fake)
    eng.generate([GenerationRequest(prompt="hi", params=SamplingParams(max_new_tokens=8))])  # 2 + 8 fits
    posted = len(fake.posts())
    with pytest.raises(ValueError, match=rf"^request 'big': prompt \(2 tokens\) \+ max_new_tokens \(9\) exceeds "
                                         rf"the server's max_model_len 10 \({fake.base_url}/models\)$"):
        eng.submit([GenerationRequest(prompt="ok", params=SamplingParams(max_new_tokens=4)),
                    GenerationRequest(prompt="hi", params=SamplingParams(max_new_tokens=9), request_id="big")])
    assert eng.pending() == 0 and len(fake.posts()) == posted == 1


def test_stream_returns_every_ticket(fake):
    eng = engine_for(fake, max_concurrency=2)
    tickets = eng.submit([GenerationRequest(prompt=p, request_id=p) for p in "abc"])
    assert eng.pending() == 3
    got = {}
    while eng.pending():
        got.update(eng.poll())
    assert sorted(got) == tickets and [got[t].request_id for t in tickets] == ["a", "b", "c"]
    assert eng.poll() == []


def test_stream_error_drops_every_ticket(fake):
    fake.script = [(400, {"error": {"message": "no"}}, 0)]
    eng = engine_for(fake, max_concurrency=1)
    eng.submit([GenerationRequest(prompt="a"), GenerationRequest(prompt="b")])
    with pytest.raises(ValueError, match="HTTP 400: no"):
        while eng.pending():
            eng.poll()
    assert eng.pending() == 0


def test_defaults_from_environment(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    eng = build_engine("m", backend="openai", tokenizer=CharTokenizer())
    eng.generate([GenerationRequest(prompt="q")])
    assert fake.posts()[0][1]["authorization"] == "Bearer sk-env"
    monkeypatch.delenv("OPENAI_API_KEY")
    build_engine("m", backend="openai", tokenizer=CharTokenizer()).generate([GenerationRequest(prompt="q")])
    assert fake.posts()[1][1]["authorization"] == "Bearer EMPTY"


def test_options_are_checked_by_name():
    import inspect

    params = inspect.signature(OpenAIEngine.__init__).parameters
    assert engine_option_names("openai") == OPENAI_OPTIONS == {p for p in params if p not in ("self", "model")}
    with pytest.raises(ConfigError, match=r"engine.base_ur: not an option of the openai backend"):
        check_engine_options("openai", {"base_ur": "http://x"})
    with pytest.raises(ValueError, match="max_concurrency >= 1"):
        OpenAIEngine("m", base_url="http://127.0.0.1:9/v1", tokenizer=CharTokenizer(), max_concurrency=0)


def test_connection_options_do_not_shape_outputs():
    from meds3.resume import engine_key

    options = {"base_url": "http://a:8000/v1", "api_key": "sk-secret", "max_concurrency": 8, "max_retries": 1,
               "retry_backoff": 0.1, "timeout": 5, "load_adapters": True, "tokenizer": "tiny-random-llama", "seed": 3}
    # a resumed job may reach its server elsewhere; the key never holds the API key
    assert engine_key(options) == {"seed": 3, "tokenizer": "tiny-random-llama"}


# ------------------------------------------------------------ a real vLLM server


@pytest.mark.vllm
@pytest.mark.slow  # starts a real vLLM server (once per session)
def test_real_server_chat_prompt_and_tokenizer_match_transformers(openai_server):
    from transformers import AutoTokenizer

    local = AutoTokenizer.from_pretrained(openai_server.model_path)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What causes scurvy?"}]
    want = local.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    with build_engine("tiny", backend="openai", base_url=openai_server.base_url,
                      tokenizer=str(openai_server.model_path)) as eng:
        assert eng.chat_prompt(messages) == want
    with build_engine("tiny", backend="openai", base_url=openai_server.base_url) as remote:  # /tokenize
        assert remote.chat_prompt(messages) == want
        assert remote.encode(want) == local.encode(want, add_special_tokens=False)
        [result] = remote.generate([GenerationRequest(prompt=want, params=SamplingParams(temperature=0,
                                                                                         max_new_tokens=4))])
        assert result.prompt_token_ids == local.encode(want, add_special_tokens=False)
        assert len(result.samples[0].token_ids) == 4


@pytest.mark.vllm
@pytest.mark.slow  # starts a real vLLM server (once per session)
def test_real_server_refuses_too_long_requests(openai_server):
    from openai_server import MAX_MODEL_LEN

    too_long = GenerationRequest(prompt="Hello there", request_id="long",
                                 params=SamplingParams(max_new_tokens=MAX_MODEL_LEN))
    with build_engine("tiny", backend="openai", base_url=openai_server.base_url,
                      tokenizer=str(openai_server.model_path)) as eng:  # checked here, from /v1/models
        with pytest.raises(ValueError, match=rf"^request 'long': prompt \(2 tokens\) \+ max_new_tokens \(512\) "
                                             rf"exceeds the server's max_model_len {MAX_MODEL_LEN} "):
            eng.generate([too_long])
    # prompt ids unknown here: the server refuses (vLLM 0.32 lets prompt + max_tokens pass the context,
    # but not max_tokens alone)
    way_too_long = GenerationRequest(prompt="Hello there", request_id="long",
                                     params=SamplingParams(max_new_tokens=MAX_MODEL_LEN + 1))
    with build_engine("tiny", backend="openai", base_url=openai_server.base_url) as remote:
        with pytest.raises(ValueError, match=rf"^{openai_server.base_url}/completions: request 'long': HTTP 400: "):
            remote.generate([way_too_long])
    with build_engine("no-such-model", backend="openai", base_url=openai_server.base_url,
                      tokenizer=str(openai_server.model_path)) as unknown:
        with pytest.raises(ValueError, match=r"HTTP 404: .*check the served model name"):
            unknown.generate([GenerationRequest(prompt="hi")])


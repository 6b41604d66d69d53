"""Cloud LLM summaries for `sumctl bench`: read from a file, or asked live of an API.

Files: `--cloud gpt-4o=outs.jsonl`, one {"id", "summary"} a line (optionally `latency_s`,
`prompt_tokens`, `completion_tokens`), scored exactly like the local models.

Live: any OpenAI-compatible chat-completions endpoint. It gets the same prompt templates as the
local bundles (runtime/prompts.py) and long transcripts are chapterized by the same Summarizer,
so the comparison differs only in the model. Calls run with bounded concurrency, are retried with
exponential backoff on 429, 5xx and connection errors, and every response is cached on disk under
the sha256 of (model, messages, parameters): a rerun of the same bench makes no calls and costs
nothing. The API key is read from an environment variable and goes only into the
Authorization header: never into the cache, the report or an error message.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Callable

from .backend import Backend, Generation, GenerationOptions
from .bench_report import publish
from .bundle import Bundle, Manifest, atomic_write_text
from .errors import InputError, SumctlError
from .evaluation import EvalRecord
from .prompts import MAX_NEW_TOKENS, default_templates
from .summarizer import Summarizer

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_CONTEXT_TOKENS = 8192
# No tokenizer for a remote model: budget with a deliberately high estimate (English runs near
# 4 characters a token) so that a chapter never overflows the context.
CHARS_PER_TOKEN = 3.0
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class CloudError(SumctlError):
    """A cloud endpoint that refused, failed past its retries, or answered something unreadable."""


# --- outputs from a file ----------------------------------------------------------------------

@dataclass
class CloudOutput:
    id: str
    summary: str
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    calls: int = 0
    cached_calls: int = 0


def parse_cloud_spec(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise InputError(f"--cloud {spec!r}: expected NAME=OUTPUTS.jsonl, e.g. gpt-4o=outs.jsonl")
    return name.strip(), Path(path.strip()).expanduser()


def load_cloud_outputs(path: str | Path, dataset_ids: list[str]) -> dict[str, CloudOutput]:
    """Read a cloud outputs file and check it covers every evaluated id."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such cloud outputs file (--cloud NAME=FILE.jsonl)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the cloud outputs ({e})") from None
    outputs: dict[str, CloudOutput] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: not valid JSON ({e.msg}); each line must be "
                             '{"id": ..., "summary": ...}') from None
        if not isinstance(obj, dict):
            raise InputError(f"{where}: expected a JSON object with id and summary")
        missing = [k for k in ("id", "summary") if k not in obj]
        if missing:
            raise InputError(f"{where}: missing field {', '.join(repr(m) for m in missing)} "
                             "(each line needs id and summary)")
        if not isinstance(obj["summary"], str):
            raise InputError(f"{where}: 'summary' must be a string")
        rid = str(obj["id"])
        if rid in outputs:
            raise InputError(f"{where}: id {rid!r} appears twice (one summary per id)")
        outputs[rid] = CloudOutput(
            rid, obj["summary"].strip(), _number(obj.get("latency_s"), where, "latency_s"),
            _count(obj.get("prompt_tokens"), where, "prompt_tokens"),
            _count(obj.get("completion_tokens", obj.get("output_tokens")), where, "completion_tokens"))
    wanted = set(dataset_ids)
    absent = [i for i in dataset_ids if i not in outputs]
    if absent:
        overlap = len(wanted & set(outputs))
        hint = ("none of its ids match --data: was it made from another data file?" if not overlap
                else "make the cloud file from the same data, or narrow --data/--limit")
        raise InputError(f"{path}: no summary for {len(absent)} of the {len(dataset_ids)} ids in "
                         f"--data (first: {', '.join(repr(a) for a in absent[:3])}); {hint}")
    return {i: outputs[i] for i in dataset_ids}


def _number(value, where: str, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise InputError(f"{where}: {name!r} must be a non-negative number")


def _count(value, where: str, name: str) -> int | None:
    number = _number(value, where, name)
    return None if number is None else int(number)


def write_cloud_outputs(outputs: list[CloudOutput], path: str | Path) -> Path:
    """Save live outputs in the file format above, so a live run can be re-scored offline."""
    lines = []
    for o in outputs:
        lines.append(json.dumps({"id": o.id, "summary": o.summary, "latency_s": o.latency_s,
                                 "prompt_tokens": o.prompt_tokens,
                                 "completion_tokens": o.completion_tokens}, ensure_ascii=False))
    path = Path(path)
    atomic_write_text(path, "\n".join(lines) + "\n")
    publish(path)
    return path


def estimate_cost(prompt_tokens: int, completion_tokens: int, price_per_1k: float | None,
                  price_per_1k_output: float | None = None) -> float | None:
    """Cost from user-supplied prices; output tokens use their own price when one is given."""
    if price_per_1k is None:
        return None
    out_price = price_per_1k if price_per_1k_output is None else price_per_1k_output
    return prompt_tokens / 1000 * price_per_1k + completion_tokens / 1000 * out_price


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


# --- the live client --------------------------------------------------------------------------

@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # of the call that produced it, also when it now comes from the cache
    cached: bool
    attempts: int = 1


def public_url(url: str) -> str:
    """The URL without user:password@ or a query string, where some APIs put their key."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def chat_url(endpoint: str) -> str:
    """The chat-completions URL for a base URL (".../v1" or the host) or the full URL itself."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(endpoint)
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions" if path.endswith("/v1") else "/v1/chat/completions"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class ChatClient:
    """A small OpenAI-compatible chat-completions client (stdlib only), safe to share across threads."""

    def __init__(self, endpoint: str, model: str, *, api_key: str | None = None,
                 concurrency: int = 4, timeout: float = 300.0, max_retries: int = 5,
                 backoff: float = 1.0, cache_dir: str | Path | None = None,
                 params: dict | None = None, sleep: Callable[[float], None] = time.sleep):
        if concurrency < 1:
            raise CloudError("--cloud-concurrency must be at least 1")
        self.url = chat_url(endpoint)
        self.model = model
        self._api_key = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.params = dict(params or {})
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self.calls_made = 0  # HTTP requests sent, retries included
        self.retries = 0
        self.cache_hits = 0

    def __repr__(self) -> str:  # never show the key, even in a debugger or a traceback
        return f"ChatClient({public_url(self.url)!r}, model={self.model!r})"

    def describe(self) -> dict:
        """What the report records about the endpoint (no key)."""
        return {"endpoint": public_url(self.url), "model": self.model, "params": self.params,
                "concurrency": self.concurrency, "max_retries": self.max_retries,
                "api_key": "set" if self._api_key else "not set",
                "cache_dir": str(self.cache_dir) if self.cache_dir else None}

    def cache_key(self, messages: list[dict], params: dict) -> str:
        blob = json.dumps({"model": self.model, "messages": messages, "params": params},
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def complete(self, prompt: str, max_tokens: int) -> Completion:
        messages = [{"role": "user", "content": prompt}]
        params = {**self.params, "max_tokens": max_tokens}
        key = self.cache_key(messages, params)
        hit = self._cache_read(key)
        if hit is not None:
            return hit
        body = json.dumps({"model": self.model, "messages": messages, **params}).encode("utf-8")
        with self._slots:
            started = time.perf_counter()
            data, attempts = self._post(body)
            latency = time.perf_counter() - started
        completion = self._parse(data, prompt, latency, attempts)
        self._cache_write(key, completion)
        return completion

    def _post(self, body: bytes) -> tuple[dict, int]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self.calls_made += 1
                if attempt:
                    self.retries += 1
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            retry_after = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                try:
                    return json.loads(raw), attempt + 1
                except json.JSONDecodeError:
                    raise CloudError(f"{public_url(self.url)}: the response is not JSON "
                                     f"({self._redact(raw[:120].decode('utf-8', 'replace'))!r})") from None
            except urllib.error.HTTPError as e:
                detail = self._redact(e.read()[:300].decode("utf-8", "replace").strip())
                if e.code not in RETRY_STATUS:
                    hint = " (check the API key in the environment variable)" if e.code in (401, 403) else ""
                    raise CloudError(f"{public_url(self.url)}: HTTP {e.code} {e.reason}{hint}: {detail}") from None
                last = f"HTTP {e.code} {e.reason}"
                retry_after = _retry_after(e.headers.get("Retry-After"))
            except (urllib.error.URLError, HTTPException, ConnectionError, socket.timeout, TimeoutError) as e:
                reason = getattr(e, "reason", None) or e
                last = f"{type(e).__name__}: {self._redact(str(reason))}"
            if attempt < self.max_retries:
                delay = self.backoff * (2 ** attempt) * (1 + 0.1 * random.random())
                self._sleep(min(60.0, max(delay, retry_after or 0.0)))
        raise CloudError(f"{public_url(self.url)}: gave up after {self.max_retries + 1} attempts ({last}); "
                         "check the endpoint, or raise --cloud-retries")

    def _parse(self, data: dict, prompt: str, latency: float, attempts: int) -> Completion:
        try:
            text = data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise CloudError(f"{public_url(self.url)}: not a chat-completions response "
                             f"(no choices[0].message.content); is this an OpenAI-compatible API?") from None
        usage = data.get("usage") or {}
        return Completion(text.strip(), int(usage.get("prompt_tokens") or estimate_tokens(prompt)),
                          int(usage.get("completion_tokens") or estimate_tokens(text)),
                          round(latency, 4), False, attempts)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _cache_path(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir else None

    def _cache_read(self, key: str) -> Completion | None:
        path = self._cache_path(key)
        if path is None or not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            completion = Completion(entry["text"], int(entry["prompt_tokens"]),
                                    int(entry["completion_tokens"]), float(entry["latency_s"]), True)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged entry is just a miss; the fresh answer replaces it
        with self._lock:
            self.cache_hits += 1
        return completion

    def _cache_write(self, key: str, c: Completion) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"key": key, "model": self.model, "text": c.text, "prompt_tokens": c.prompt_tokens,
                 "completion_tokens": c.completion_tokens, "latency_s": c.latency_s,
                 "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write_text(path, json.dumps(entry, ensure_ascii=False) + "\n")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def api_key_from_env(name: str | None) -> str | None:
    return os.environ.get(name) if name else None


# --- live summaries through the shared Summarizer --------------------------------------------

class CloudBackend(Backend):
    """A Backend whose model is behind an API, so chapterization and the recursive reduce are
    exactly the Summarizer's. One instance per document, to time that document's calls."""

    honours_stronger = False  # the request is the cache key; a retry would be the same call

    name = "cloud"

    def __init__(self, bundle: Bundle, client: ChatClient, context_tokens: int):
        super().__init__(bundle)
        self.client = client
        self.context_tokens = context_tokens
        self.completions: list[Completion] = []

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def input_budget(self, template: str, max_new_tokens: int) -> int:
        # 64: the chat template's role markers around the message.
        return self.context_tokens - estimate_tokens(template.replace("{transcript}", "")) - max_new_tokens - 64

    def generate(self, prompts: list[str], options: GenerationOptions) -> list[Generation]:
        out = []
        for prompt in prompts:
            c = self.client.complete(prompt, options.max_new_tokens)
            self.completions.append(c)
            out.append(Generation(c.text, c.prompt_tokens, c.completion_tokens))
        return out


def cloud_bundle(name: str, client: ChatClient, context_tokens: int) -> Bundle:
    """An in-memory bundle describing the endpoint: the same prompts and budgets as local models."""
    manifest = Manifest(backend=CloudBackend.name,
                        source={"model": client.model, "endpoint": client.url},
                        quantization="unknown (cloud)", max_input_tokens=context_tokens,
                        prompts=default_templates(),
                        generation={"max_new_tokens": dict(MAX_NEW_TOKENS), "num_beams": 1},
                        name=name, label="cloud model")
    return Bundle(Path(f"cloud-{name}"), manifest)


class CloudSummarizer(Summarizer):
    """The Summarizer with its model behind an API: nothing to load, nothing on disk."""

    def __init__(self, bundle: Bundle, backend: CloudBackend, *, length: str):
        super().__init__(bundle, backend=backend, length=length)

    @property
    def model_info(self) -> dict:
        m = self.bundle.manifest
        return {"name": m.name, "label": m.label, "path": m.source.get("endpoint"),
                "backend": m.backend, "quantization": m.quantization, "sha256": None,
                "source": m.source.get("model")}


@dataclass
class LiveResult:
    outputs: list[CloudOutput]
    calls_made: int
    cache_hits: int
    retries: int
    wall_s: float
    errors: list[str] = field(default_factory=list)


def summarize_live(records: list[EvalRecord], client: ChatClient, *, name: str, length: str,
                   context_tokens: int = DEFAULT_CONTEXT_TOKENS,
                   on_done: Callable[[CloudOutput], None] | None = None) -> LiveResult:
    """Summarize every record through the endpoint, `client.concurrency` documents at a time."""
    bundle = cloud_bundle(name, client, context_tokens)
    calls_before, hits_before, retries_before = client.calls_made, client.cache_hits, client.retries

    def one(record: EvalRecord) -> CloudOutput:
        backend = CloudBackend(bundle, client, context_tokens)
        summary = CloudSummarizer(bundle, backend, length=length).summarize(record.transcript, length=length,
                                                                         query=record.query)
        done = backend.completions
        output = CloudOutput(record.id, summary.text, round(sum(c.latency_s for c in done), 4),
                             sum(c.prompt_tokens for c in done), sum(c.completion_tokens for c in done),
                             len(done), sum(c.cached for c in done))
        if on_done:
            on_done(output)
        return output

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=client.concurrency, thread_name_prefix="cloud") as pool:
        outputs = list(pool.map(one, records))
    return LiveResult(outputs, client.calls_made - calls_before, client.cache_hits - hits_before,
                      client.retries - retries_before, round(time.perf_counter() - started, 3))

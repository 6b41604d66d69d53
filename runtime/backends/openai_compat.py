"""The OpenAI-compatible backend: a model behind any chat-completions endpoint (a cloud API,
or `python -m llama_cpp.server` on loopback), summarized exactly like a local bundle.

It gets the same prompt templates as the local bundles (runtime/prompts.py) and long
transcripts are chapterized by the same Summarizer, so a comparison differs only in the model.
Calls run with bounded concurrency, are retried with exponential backoff on 429, 5xx and
connection errors, and every response is cached on disk under the sha256 of (model, messages,
parameters): a rerun makes no calls and costs nothing. The API key is read from an environment
variable and goes only into the Authorization header: never into the cache, a report or an
error message.
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
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Callable

from sumctl.runtime.backends.base import Backend, Generation, GenerationOptions
from sumctl.runtime.bundle import MANIFEST_NAME, Bundle, GenerationDefaults, Manifest
from sumctl.runtime.bundle.configs import DEFAULT_KEY_ENV, OpenAICompatConfig
from sumctl.runtime.errors import CloudError
from sumctl.runtime.fsutil import atomic_write_text
from sumctl.runtime.prompts import default_templates
from sumctl.runtime.jsonout import strict_dumps

# No tokenizer for a remote model: budget with a deliberately high estimate (English runs near
# 4 characters a token) so that a chapter never overflows the context.
CHARS_PER_TOKEN = 3.0
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


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
        blob = strict_dumps({"model": self.model, "messages": messages, "params": params},
                             sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def complete(self, prompt: str, max_tokens: int) -> Completion:
        messages = [{"role": "user", "content": prompt}]
        params = {**self.params, "max_tokens": max_tokens}
        key = self.cache_key(messages, params)
        hit = self._cache_read(key)
        if hit is not None:
            return hit
        body = strict_dumps({"model": self.model, "messages": messages, **params}).encode("utf-8")
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
        atomic_write_text(path, strict_dumps(entry, ensure_ascii=False) + "\n")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def api_key_from_env(name: str | None) -> str | None:
    return os.environ.get(name) if name else None


class OpenAICompatBackend(Backend):
    """A model behind an OpenAI-compatible endpoint, so chapterization and the recursive reduce
    are exactly the Summarizer's. The bundle's backend_config names the endpoint, the model,
    its context and the environment variable holding the key (OpenAICompatConfig); a shared
    `client` may be passed instead, as `sumctl bench` does to count and cache every call.
    Each instance keeps the completions it made, so one instance per document times that
    document's calls."""

    honours_stronger = False  # the request is the cache key; a retry would be the same call

    name = OpenAICompatConfig.backend

    def __init__(self, bundle: Bundle, *, threads: int | None = None, client: ChatClient | None = None):
        super().__init__(bundle, threads=threads)
        config = OpenAICompatConfig.from_dict(bundle.manifest.backend_config,
                                              f"{bundle.path}/{MANIFEST_NAME}")
        self.client = client or ChatClient(config.endpoint, config.model,
                                           api_key=api_key_from_env(config.api_key_env))
        self.context_tokens = int(config.context_tokens)
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


def cloud_bundle(name: str, client: ChatClient, context_tokens: int, *,
                 api_key_env: str | None = DEFAULT_KEY_ENV) -> Bundle:
    """An in-memory bundle describing the endpoint: the same prompts and budgets as local models."""
    config = OpenAICompatConfig(endpoint=client.url, model=client.model,
                                context_tokens=context_tokens, api_key_env=api_key_env)
    manifest = Manifest(backend=OpenAICompatBackend.name,
                        source={"model": client.model, "endpoint": client.url},
                        quantization="unknown (cloud)", max_input_tokens=context_tokens,
                        prompts=default_templates(),
                        generation=GenerationDefaults(),
                        backend_config=config.to_dict(), name=name, label="cloud model")
    return Bundle(Path(f"cloud-{name}"), manifest)

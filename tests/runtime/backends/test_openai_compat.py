"""The OpenAI-compatible backend's client against real servers on loopback: retries, the
cache, and an API key that never leaks."""

from __future__ import annotations

import json

import pytest
from bench_fixtures import SERVER_MODEL_ALIAS

from sumctl.runtime.backends.openai_compat import ChatClient, chat_url
from sumctl.runtime.errors import CloudError

SECRET = "sk-test-7f3a9c-never-log-me"


def test_retries_then_gives_up_without_leaking_the_key(bench_error_server, tmp_path):
    bench_error_server.fail_always = 503
    sleeps = []
    client = ChatClient(bench_error_server.url, "m", api_key=SECRET, max_retries=3, backoff=0.5,
                        cache_dir=tmp_path / "cache", sleep=sleeps.append)
    with pytest.raises(CloudError) as e:
        client.complete("hello", 8)
    assert "gave up after 4 attempts (HTTP 503" in str(e.value) and SECRET not in str(e.value)
    assert len(bench_error_server.requests) == 4 and client.retries == 3
    # Exponential backoff: each wait about doubles the one before.
    assert len(sleeps) == 3 and all(b > a * 1.7 for a, b in zip(sleeps, sleeps[1:]))
    assert bench_error_server.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(client) and SECRET not in json.dumps(client.describe())
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.json"))


def test_client_errors_are_not_retried(bench_error_server):
    bench_error_server.fail_always = 401
    client = ChatClient(bench_error_server.url, "m", api_key=SECRET, sleep=lambda s: None)
    with pytest.raises(CloudError, match="HTTP 401.*check the API key"):
        client.complete("hello", 8)
    assert len(bench_error_server.requests) == 1


def test_connection_errors_are_retried(tmp_path):
    from bench_fixtures import free_port

    client = ChatClient(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=2, sleep=lambda s: None)
    with pytest.raises(CloudError, match="gave up after 3 attempts"):
        client.complete("hello", 8)
    assert client.calls_made == 3


# --- the real server -------------------------------------------------------------------------

@pytest.mark.slow
def test_a_500_is_retried_and_the_answer_is_cached(bench_fault_proxy, tmp_path):
    bench_fault_proxy.failures = [500]
    cache = tmp_path / "cache"
    client = ChatClient(bench_fault_proxy.url, SERVER_MODEL_ALIAS, api_key=SECRET, backoff=0.2,
                        cache_dir=cache, params={"temperature": 0.0, "seed": 0})
    prompt = "Summarize in one sentence.\n\nAnn: We ship on Friday.\nBob: I will write the notes."
    first = client.complete(prompt, 24)
    assert first.text and not first.cached and first.attempts == 2
    assert first.prompt_tokens > 10 and 0 < first.completion_tokens <= 24  # the server's usage
    assert bench_fault_proxy.failed == 1 and bench_fault_proxy.forwarded == 1 and client.retries == 1
    assert first.latency_s > 0

    again = ChatClient(bench_fault_proxy.url, SERVER_MODEL_ALIAS, cache_dir=cache,
                       params={"temperature": 0.0, "seed": 0}).complete(prompt, 24)
    assert again.cached and again.text == first.text and again.latency_s == first.latency_s
    assert len(bench_fault_proxy.requests) == 2  # no new request
    entries = list(cache.rglob("*.json"))
    assert len(entries) == 1 and SECRET not in entries[0].read_text()
    # Another budget is another request, hence another key.
    assert client.cache_key([{"role": "user", "content": prompt}], {"max_tokens": 24}) != \
        client.cache_key([{"role": "user", "content": prompt}], {"max_tokens": 25})


def test_urls_in_reports_and_errors_drop_credentials(bench_error_server):
    from sumctl.runtime.backends.openai_compat import public_url

    assert public_url("https://user:pw@h.example/v1/chat/completions?api-key=abc") == \
        "https://h.example/v1/chat/completions"
    assert chat_url("https://h/deploy/chat/completions?api-version=2024") == \
        "https://h/deploy/chat/completions?api-version=2024"
    bench_error_server.fail_always = 400
    client = ChatClient(bench_error_server.url + "/chat/completions?api-key=" + SECRET, "m")
    with pytest.raises(CloudError) as e:
        client.complete("hi", 4)
    assert "HTTP 400" in str(e.value) and SECRET not in str(e.value)
    assert SECRET not in json.dumps(client.describe()) and SECRET not in repr(client)
    assert bench_error_server.requests[0]["path"].endswith("api-key=" + SECRET)  # it was still sent

"""Cloud outputs: files of {id, summary}, and the live chat-completions client against a real
llama.cpp server (llama-cpp-python's OpenAI-compatible server) on loopback."""

from __future__ import annotations

import json

import pytest
from bench_fixtures import SERVER_MODEL_ALIAS

from sumctl.runtime.cloud import (ChatClient, CloudError, chat_url, estimate_cost, load_cloud_outputs,
                                  parse_cloud_spec, summarize_live)
from sumctl.runtime.errors import InputError
from sumctl.runtime.evaluation import load_dataset

SECRET = "sk-test-7f3a9c-never-log-me"


# --- files -----------------------------------------------------------------------------------

def test_cloud_file_covers_the_data_ids_and_keeps_optional_fields(tmp_path):
    path = tmp_path / "gpt.jsonl"
    path.write_text('{"id": "a", "summary": " A. ", "latency_s": 1.5, "completion_tokens": 9}\n'
                    '{"id": "b", "summary": "B."}\n{"id": "extra", "summary": "not evaluated"}\n')
    outputs = load_cloud_outputs(path, ["b", "a"])
    assert list(outputs) == ["b", "a"]  # in data order, extras dropped
    assert outputs["a"].summary == "A." and outputs["a"].latency_s == 1.5
    assert outputs["a"].completion_tokens == 9 and outputs["b"].latency_s is None


@pytest.mark.parametrize("content, ids, message", [
    ('{"id": "a"}\n', ["a"], ":1: missing field 'summary'"),
    ('{"id": "a", "summary": "x"}\n{"id": "a", "summary": "y"}\n', ["a"], ":2: id 'a' appears twice"),
    ('{"id": "a", "summary": "x"}\n', ["a", "b", "c"], "no summary for 2 of the 3 ids in --data (first: 'b', 'c')"),
    ('{"id": "z", "summary": "x"}\n', ["a"], "none of its ids match --data"),
    ('{"id": "a", "summary": "x", "latency_s": -1}\n', ["a"], "'latency_s' must be a non-negative number"),
])
def test_bad_cloud_files_say_what_is_wrong(tmp_path, content, ids, message):
    path = tmp_path / "c.jsonl"
    path.write_text(content)
    with pytest.raises(InputError) as e:
        load_cloud_outputs(path, ids)
    assert str(path) in str(e.value) and message in str(e.value)


def test_specs_urls_and_cost():
    assert parse_cloud_spec("gpt-4o=outs/a.jsonl")[0] == "gpt-4o"
    with pytest.raises(InputError, match="NAME=OUTPUTS.jsonl"):
        parse_cloud_spec("outs.jsonl")
    assert chat_url("https://api.openai.com/v1") == "https://api.openai.com/v1/chat/completions"
    assert chat_url("http://h:8000") == "http://h:8000/v1/chat/completions"
    assert chat_url("http://h/v1/chat/completions/") == "http://h/v1/chat/completions"
    assert estimate_cost(2000, 500, 0.01) == pytest.approx(0.025)
    assert estimate_cost(2000, 500, 0.01, 0.03) == pytest.approx(0.035)
    assert estimate_cost(2000, 500, None) is None


# --- errors, without a model -----------------------------------------------------------------

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


@pytest.mark.slow
def test_live_summaries_use_the_shared_prompts_and_concurrency(bench_llama_server, bench_dialogsum5, tmp_path):
    records = load_dataset(bench_dialogsum5, limit=3).records
    client = ChatClient(bench_llama_server, SERVER_MODEL_ALIAS, concurrency=2, cache_dir=tmp_path / "c",
                        params={"temperature": 0.0, "seed": 0})
    done = []
    live = summarize_live(records, client, name="served", length="short", on_done=done.append)
    assert [o.id for o in live.outputs] == [r.id for r in records]
    assert len(done) == 3 and live.calls_made == 3 and live.cache_hits == 0
    for o in live.outputs:
        assert o.summary and o.calls == 1 and o.latency_s > 0 and o.completion_tokens <= 64
    rerun = summarize_live(records, client, name="served", length="short")
    assert rerun.calls_made == 0 and rerun.cache_hits == 3
    assert [o.summary for o in rerun.outputs] == [o.summary for o in live.outputs]


@pytest.mark.slow
def test_long_transcripts_are_chapterized_like_for_local_models(bench_fault_proxy, tmp_path):
    """With a small context, the Summarizer's chapterization and reduce run over the API, with
    the same prompt templates the local bundles get."""
    from sumctl.runtime.evaluation import EvalRecord
    from sumctl.runtime.prompts import INSTRUCTIONS
    from sumctl.runtime.transcript import parse_text

    text = "\n".join(f"Speaker{i % 3}: point {i} is about the budget, the launch plan and who "
                     f"owns the follow-up." for i in range(30))
    record = EvalRecord("long", parse_text(text), "ref", 1)
    client = ChatClient(bench_fault_proxy.url, SERVER_MODEL_ALIAS, cache_dir=tmp_path / "c",
                        params={"temperature": 0.0, "seed": 0})
    live = summarize_live([record], client, name="served", length="short", context_tokens=500)
    prompts = [r["json"]["messages"][0]["content"] for r in bench_fault_proxy.requests]
    assert live.outputs[0].calls == len(prompts) > 2
    # Chapters get the detailed instruction; the last call (the reduce) the one asked for.
    assert all(p.startswith(INSTRUCTIONS["medium"]) for p in prompts[:-1])
    assert prompts[-1].startswith(INSTRUCTIONS["short"])
    assert "Speaker0: point 0 " in prompts[0] and "Speaker0: point 0 " not in prompts[-1]
    assert all(r["json"]["max_tokens"] <= 64 for r in bench_fault_proxy.requests)


def test_urls_in_reports_and_errors_drop_credentials(bench_error_server):
    from sumctl.runtime.cloud import public_url

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

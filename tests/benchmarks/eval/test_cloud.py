"""Cloud outputs for the bench: files of {id, summary}, and live summaries through a real
llama.cpp server (llama-cpp-python's OpenAI-compatible server) on loopback."""

from __future__ import annotations


import pytest
from bench_fixtures import SERVER_MODEL_ALIAS

from sumctl.benchmarks.eval.cloud import estimate_cost, load_cloud_outputs, parse_cloud_spec, summarize_live
from sumctl.runtime.backends.openai_compat import ChatClient, chat_url
from sumctl.runtime.errors import InputError
from sumctl.benchmarks.eval.records import load_dataset

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
    from sumctl.benchmarks.eval.records import EvalRecord
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

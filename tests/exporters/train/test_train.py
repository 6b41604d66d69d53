"""`sumctl train` on tiny random T5 and llama models: real Trainer, real peft, real exporters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from bench_fixtures import png_size
from train_fixtures import train_records, write_jsonl

from sumctl.exporters.train.run import TrainConfig, train
from sumctl.exporters.errors import TrainError
from sumctl.exporters.train.data import Example, IGNORE_INDEX, encode
from sumctl.runtime.prompts import default_templates, fill
from sumctl.runtime.transcript import parse_text

pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("one_thread")]


def _config(base: Path, data: Path, out: Path, **kw) -> TrainConfig:
    settings = dict(base=str(base), data=data, out=out, batch_size=3, save_steps=100, progress=False,
                    default_length="short")
    settings.update(kw)
    return TrainConfig(**settings)


def _losses(result) -> list[float]:
    return [p["loss"] for p in result.report["loss_curve"]]


def _assert_learned(result, factor: float) -> None:
    losses = _losses(result)
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < factor * first, f"loss did not fall enough: {losses}"


def _assert_plain_checkpoint(out: Path) -> None:
    """A merged, safetensors-only Hugging Face folder: what `sumctl export` takes."""
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not [n for n in names if n.startswith("adapter_") or n.endswith((".bin", ".pt"))]
    config = json.loads((out / "config.json").read_text())
    assert "peft" not in json.dumps(config).lower()


# --- causal-LM prompts and loss masking ---------------------------------------------------------

def test_causal_labels_are_masked_exactly_over_the_prompt(train_llama_base):
    from transformers import AutoTokenizer

    from sumctl.exporters.train.hf_backend import CAUSAL, ModelShape, causal_prompt_ids

    tokenizer = AutoTokenizer.from_pretrained(train_llama_base)
    shape = ModelShape(CAUSAL, tokenizer, 1024)
    templates = default_templates()
    example = Example("a", 1, "short", "transcript", "Ann: We ship on Friday.\nBob: Agreed.",
                      "They agreed to ship on Friday.", 1)
    features = encode(example, shape, templates)
    prompt = causal_prompt_ids(tokenizer, fill(templates["short"], example.text))
    n = len(prompt)
    assert features["input_ids"][:n] == prompt
    assert features["labels"][:n] == [IGNORE_INDEX] * n
    target = features["labels"][n:]
    assert IGNORE_INDEX not in target and target == features["input_ids"][n:]
    # The reply is the reference and the template's end-of-turn token, nothing else.
    assert tokenizer.decode(target) == "They agreed to ship on Friday.<|im_end|>"
    # The prompt is the chat template's user turn holding the filled runtime template.
    rendered = tokenizer.decode(prompt)
    assert rendered.endswith("<|im_start|>assistant\n")
    assert fill(templates["short"], example.text) in rendered


# --- T5 -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_t5_lora_overfits_exports_and_summarizes(train_t5_base, train_jsonl, train_eval_jsonl, tmp_path):
    from sumctl.exporters.train.hf_backend import SEQ2SEQ, ModelShape
    from sumctl.exporters.onnx_t5 import export_t5
    from sumctl.runtime.summarizer import Summarizer

    out = tmp_path / "ft"
    result = train(_config(train_t5_base, train_jsonl, out, eval_data=train_eval_jsonl, max_steps=36, lr=3e-3,
                           max_input_tokens=256))
    _assert_learned(result, 0.2)
    _assert_plain_checkpoint(out)
    report = json.loads((out / "training" / "report.json").read_text())
    assert report["mode"] == "lora" and report["steps"] == 36
    assert report["params"]["trainable"] < report["params"]["total"] / 2
    assert report["eval_after"]["rouge1"]["mean"] > report["eval_before"]["rouge1"]["mean"] + 0.3
    assert report["eval_gain"]["rouge1"]["low"] > 0
    width, height = png_size(out / "training" / "loss.png")
    assert width > 300 and height > 200

    # fp32, because the check below is exact text: an fp32 bundle is token-identical to PyTorch,
    # while int8 may flip a near-tied token (this test failed now and then when it exported int8;
    # int8 against PyTorch is measured by the exporter's own verification, tested elsewhere).
    bundle = export_t5(str(out), tmp_path / "bundle", quantize="none", max_input_tokens=256)
    # The runtime budgets the input exactly as training did.
    from transformers import AutoTokenizer

    shape = ModelShape(SEQ2SEQ, AutoTokenizer.from_pretrained(out), 256)
    summarizer = Summarizer(bundle, length="short")
    for length, template in default_templates().items():
        assert summarizer.backend.input_budget(template, 64) == shape.input_budget(template, 64)
    record = json.loads(train_eval_jsonl.read_text().splitlines()[0])
    summary = summarizer.summarize(parse_text(record["transcript"]))
    after = json.loads((out / "training" / "eval_summaries.json").read_text())["after"]
    assert summary.text.strip()
    assert summary.text == after[0]["summary"]  # the ONNX runtime writes what PyTorch wrote in training


@pytest.mark.slow
def test_t5_full_finetune_lowers_the_loss(train_t5_base, train_jsonl, tmp_path):
    result = train(_config(train_t5_base, train_jsonl, tmp_path / "ft", lora=False, max_steps=12, lr=2e-3,
                           max_input_tokens=256))
    _assert_learned(result, 0.5)
    _assert_plain_checkpoint(tmp_path / "ft")
    report = result.report
    assert report["mode"] == "full" and report["params"]["trainable"] == report["params"]["total"]


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(
        train_t5_base, train_jsonl, tmp_path):
    import signal
    import subprocess
    import time

    from bench_fixtures import sumctl_cmd
    from safetensors.torch import load_file

    steps = 10
    args = ["--base", str(train_t5_base), "--data", str(train_jsonl), "--max-steps", str(steps),
            "--save-steps", "2", "--lr", "3e-3", "--batch-size", "3", "--max-input-tokens", "256",
            "--default-length", "short", "--quiet"]
    killed = tmp_path / "killed"
    # One thread, like this process (the one_thread fixture): the same arithmetic, bit for bit.
    proc = subprocess.Popen([*sumctl_cmd(), "train", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    first = killed / "training" / "checkpoints" / "checkpoint-2" / "trainer_state.json"

    def first_checkpoint_written() -> bool:
        # The file exists from its first byte: killed then, checkpoint-2 is incomplete and rightly
        # skipped (_last_checkpoint), which would leave nothing to resume from.
        try:
            return json.loads(first.read_text(encoding="utf-8")).get("global_step") == 2
        except (OSError, ValueError):
            return False

    deadline = time.monotonic() + 300
    while not first_checkpoint_written() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # a crash, not a polite stop
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be interrupted"
    assert not (killed / "model.safetensors").exists()

    kw = dict(lr=3e-3, max_input_tokens=256, save_steps=2, max_steps=steps)
    with pytest.raises(TrainError, match="--resume"):
        train(_config(train_t5_base, train_jsonl, killed, **kw))
    with pytest.raises(TrainError, match="lengths"):
        train(_config(train_t5_base, train_jsonl, killed, resume=True, lengths=("short",), **kw))
    resumed = train(_config(train_t5_base, train_jsonl, killed, resume=True, **kw))
    start = int(resumed.report["resumed_from"].rsplit("-", 1)[1])
    assert 2 <= start < steps
    assert resumed.report["steps"] == steps
    assert [p["step"] for p in resumed.report["loss_curve"]] == list(range(1, steps + 1))

    straight = train(_config(train_t5_base, train_jsonl, tmp_path / "straight", **kw))
    # Same seed, same data: the crashed-and-resumed run is the uninterrupted run.
    assert _losses(resumed) == pytest.approx(_losses(straight), abs=2e-4)
    a = load_file(killed / "model.safetensors")
    b = load_file(tmp_path / "straight" / "model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


@pytest.mark.slow
def test_long_transcripts_train_on_the_runtimes_reduce_input(train_t5_base, tmp_path):
    records = train_records(5)
    long_one = train_records(30, seed=7, prefix="long")
    records.append({"id": "meeting", "transcript": "\n".join(r["transcript"] for r in long_one),
                    "reference": "Everyone talked about everything."})
    data = write_jsonl(tmp_path / "train.jsonl", records)
    out = tmp_path / "ft"
    result = train(_config(train_t5_base, data, out, max_steps=1, max_input_tokens=160))
    assert result.report["data"]["reduce_input"] == 1
    examples = [json.loads(line) for line in (out / "training" / "examples.jsonl").read_text().splitlines()]
    reduce = [e for e in examples if e["id"] == "meeting"]
    assert len(reduce) == 1 and reduce[0]["source"] == "reduce" and reduce[0]["chapters"] > 1
    # The reduce input is what the runtime's last round reads: the chapter summaries, and it
    # fits the input with the short template.
    from transformers import AutoTokenizer

    from sumctl.exporters.train.hf_backend import SEQ2SEQ, ModelShape

    shape = ModelShape(SEQ2SEQ, AutoTokenizer.from_pretrained(train_t5_base), 160)
    assert shape.count_tokens(reduce[0]["text"]) <= shape.input_budget(default_templates()["short"], 64)
    assert reduce[0]["text"] != "\n".join(r["transcript"] for r in long_one)

    skipped = train(_config(train_t5_base, data, tmp_path / "skip", max_steps=1, max_input_tokens=160,
                            long_inputs="skip"))
    assert skipped.report["data"]["skipped_long"] == 1 and skipped.report["data"]["examples"] == 5


def test_a_record_may_bring_its_own_reduce_input(train_t5_base, tmp_path):
    """Human summaries of a long meeting's parts stand in for the base model's chapter summaries."""
    records = train_records(5)
    long_one = train_records(30, seed=7, prefix="long")
    parts = "Ann opened the budget review.\nBob will send the revised plan on Friday."
    records.append({"id": "meeting", "transcript": "\n".join(r["transcript"] for r in long_one),
                    "reference": "The team reviewed the budget; Bob sends the plan Friday.",
                    "reduce_input": parts})
    out = tmp_path / "ft"
    result = train(_config(train_t5_base, write_jsonl(tmp_path / "train.jsonl", records), out,
                           max_steps=1, max_input_tokens=160))
    assert result.report["data"]["given_reduce_input"] == 1 and "reduce_input" not in result.report["data"]
    examples = [json.loads(line) for line in (out / "training" / "examples.jsonl").read_text().splitlines()]
    (given,) = [e for e in examples if e["id"] == "meeting"]
    assert given["source"] == "reduce" and given["text"] == parts and given["chapters"] > 1

    records[-1]["reduce_input"] = "   "
    with pytest.raises(TrainError, match=r"train2\.jsonl:6: 'reduce_input' must be non-empty text"):
        train(_config(train_t5_base, write_jsonl(tmp_path / "train2.jsonl", records), tmp_path / "ft2"))


def test_bad_data_is_refused_before_a_model_loads(train_t5_base, tmp_path):
    bad = tmp_path / "bad.jsonl"
    records = train_records(5)
    records[2]["length"] = "tiny"
    write_jsonl(bad, records)
    with pytest.raises(TrainError, match=r"bad\.jsonl:3: 'length' is 'tiny'"):
        train(_config(train_t5_base, bad, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# --- llama --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_llama_lora_overfits_exports_and_summarizes(train_llama_base, train_jsonl, train_eval_jsonl, tmp_path,
                                                    monkeypatch):
    from transformers import AutoTokenizer

    from sumctl.exporters.train.hf_backend import CAUSAL, ModelShape, causal_prompt_ids
    from sumctl.exporters.gguf import export_llama
    from sumctl.runtime.summarizer import Summarizer

    out = tmp_path / "ft"
    result = train(_config(train_llama_base, train_jsonl, out, eval_data=train_eval_jsonl, max_steps=20, lr=1e-2,
                           max_input_tokens=512))
    _assert_learned(result, 0.4)
    _assert_plain_checkpoint(out)
    assert result.report["eval_after"]["rouge1"]["mean"] > result.report["eval_before"]["rouge1"]["mean"]
    from sumctl.runtime.machine import cpu_has_bf16

    assert result.report["bf16"] == cpu_has_bf16()  # --precision auto: bf16 only where it is native
    assert result.report["train_tokens"] > 0 and result.report["tokens_per_second"] > 0

    # The unmerged adapter, as a llama.cpp LoRA GGUF on the base's GGUF, computes the merged model.
    from sumctl.exporters.gguf import export_lora_gguf

    info = export_lora_gguf(out / "adapter", train_llama_base, tmp_path / "adapter.gguf", threads=1)
    assert info["r"] == 16 and info["verification"]["effect_relative_error"] < 0.1, info

    bundle = export_llama(str(out), tmp_path / "bundle", quant="F16")
    monkeypatch.setenv("SUMCTL_GGUF_N_CTX", "512")  # the context training used
    summarizer = Summarizer(bundle, length="short")
    tokenizer = AutoTokenizer.from_pretrained(out)
    shape = ModelShape(CAUSAL, tokenizer, 512)
    record = json.loads(train_eval_jsonl.read_text().splitlines()[0])
    prompt = fill(default_templates()["short"], record["transcript"])
    # llama.cpp reads exactly the prompt the model was trained on, and budgets it the same way.
    assert summarizer.backend.prompt_tokens(prompt) == causal_prompt_ids(tokenizer, prompt)
    for template in default_templates().values():
        assert summarizer.backend.input_budget(template, 64) == shape.input_budget(template, 64)
    summary = summarizer.summarize(parse_text(record["transcript"]))
    after = json.loads((out / "training" / "eval_summaries.json").read_text())["after"]
    assert summary.text.split()[:4] == after[0]["summary"].split()[:4]


@pytest.mark.slow
def test_llama_full_finetune_lowers_the_loss(train_llama_base, train_jsonl, tmp_path):
    result = train(_config(train_llama_base, train_jsonl, tmp_path / "ft", lora=False, max_steps=10, lr=5e-3,
                           max_input_tokens=512))
    _assert_learned(result, 0.6)
    _assert_plain_checkpoint(tmp_path / "ft")


def test_unsupported_architecture_is_named(tmp_path, train_jsonl):
    base = tmp_path / "bert"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    (base / "model.safetensors").write_bytes(b"")
    with pytest.raises(TrainError, match="model_type 'bert'"):
        train(_config(base, train_jsonl, tmp_path / "out"))


def test_no_cuda_is_a_clear_error(train_t5_base, train_jsonl, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(TrainError, match="--device cuda"):
        train(_config(train_t5_base, train_jsonl, tmp_path / "out", device="cuda"))
    assert not os.path.exists(tmp_path / "out")


def test_records_with_labelled_minutes_teach_the_minutes_target(train_t5_base, train_llama_base, tmp_path):
    """Decisions, action items and open questions in a record become one more example: the
    minutes prompt, with the items in the target the runtime reads back (text for T5, the
    grammar's JSON for a causal LM)."""
    from sumctl.runtime.minutes.textformat import parse_items, parse_items_json

    records = train_records(5)
    records[0] |= {"decisions": ["Ship on Friday"],
                   "action_items": [{"task": "send the plan", "owner": "Bob", "due": "Friday"},
                                    "update the docs"],
                   "open_questions": [{"text": "Who pays?"}]}
    for base, name in ((train_t5_base, "t5"), (train_llama_base, "llama")):
        out = tmp_path / name
        result = train(_config(base, write_jsonl(tmp_path / f"{name}.jsonl", records), out,
                               max_steps=1, max_input_tokens=1024))
        assert result.report["data"]["minutes"] == 1
        examples = [json.loads(line) for line in (out / "training" / "examples.jsonl").read_text().splitlines()]
        (minutes,) = [e for e in examples if e["task"] == "minutes"]
        read = parse_items(minutes["reference"]) if name == "t5" else parse_items_json(minutes["reference"])
        assert read.decisions == ["Ship on Friday"] and read.open_questions == ["Who pays?"]
        assert [(a.task, a.owner, a.due) for a in read.action_items] == [
            ("send the plan", "Bob", "Friday"), ("update the docs", None, None)]
    records[1]["action_items"] = [{"owner": "Bob"}]
    with pytest.raises(TrainError, match=r"bad\.jsonl:2: each of 'action_items' needs a 'task'"):
        train(_config(train_t5_base, write_jsonl(tmp_path / "bad.jsonl", records), tmp_path / "bad"))

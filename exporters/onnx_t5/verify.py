"""A T5 bundle checked against PyTorch: greedy tokens on built-in meeting snippets, with the
agreement (and ROUGE-L between the two outputs) recorded in the manifest."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sumctl.runtime.bundle import Bundle
from sumctl.exporters.errors import ExportError
from sumctl.runtime.prompts import fill


VERIFY_MAX_NEW_TOKENS = 32
# int4 is refused below this token agreement with PyTorch fp32; int8, the default, only records
# its own. 4 bits can break a model outright (outlier weights outside INT4_EXCLUDED), and a user
# who asked for int4 is better served by int8 than by a bundle that says something else. A floor
# rather than int8's own agreement, which would mean a second quantization and verification in
# every int4 export. It is for trained models, whose logits have margins: random weights have
# none, and the tests' random tiny T5 reaches 3% with int4 (int8: 83%), so its fixture lowers the
# floor. Half the tokens is a judgement. On a small trained T5 (benchmarks/perf/t5_int4_agreement:
# d_model 128, ROUGE-L 18.4 on held-out DialogSum) int4 reached 47.9% here against int8's 83.3%,
# and left 2 of 30 held-out summaries as fp32 wrote them (int8: 13): refused, as it should be.
INT4_MIN_TOKEN_AGREEMENT = 0.5


# Short meeting snippets the export is checked on: built in, so a check never needs data.
VERIFICATION_INPUTS = (
    "Alice: Let's start with the budget. We have twelve thousand euros left for the quarter.\n"
    "Bob: Marketing wants half of it for the trade fair.\n"
    "Carol: Then the user study has to wait until January.\n"
    "Alice: Okay, decision: the fair gets six thousand, and Carol writes a smaller study plan by Friday.",
    "Project Manager: The remote control prototype is ready.\n"
    "Industrial Designer: The casing is curved and the buttons are rubber, as agreed.\n"
    "Marketing: Users in the survey asked for a scroll wheel and a voice feature.\n"
    "User Interface: Voice is too expensive for this price. We can add the scroll wheel.\n"
    "Project Manager: Fine, scroll wheel yes, voice no. Next meeting we evaluate the design.",
    "Professor: The new speech recognizer lowers the error rate on the digits task.\n"
    "PhD A: Only with the close-talking microphone. The far-field numbers are still bad.\n"
    "PhD B: We could train on noisy data. I can prepare a training set next week.\n"
    "Professor: Good. Grad C, please compare it against last year's baseline.",
)


def reference_outputs(torch_model, tokenizer, template: str, *, max_new_tokens: int = VERIFY_MAX_NEW_TOKENS,
                      count: int | None = None, inputs: Sequence[str] = VERIFICATION_INPUTS) -> list[dict]:
    """PyTorch's greedy output on each input (the built-in ones unless given): what the bundle
    must reproduce."""
    import torch
    from transformers import GenerationConfig

    config = torch_model.config
    # A fresh config: the fine-tune's own generation settings (beams, n-gram bans) do not apply.
    greedy = GenerationConfig(max_new_tokens=max_new_tokens, num_beams=1, do_sample=False,
                              decoder_start_token_id=config.decoder_start_token_id,
                              pad_token_id=config.pad_token_id, eos_token_id=config.eos_token_id)
    references = []
    for text in inputs[:count or len(inputs)]:
        prompt = fill(template, text)
        ids = tokenizer(prompt).input_ids
        with torch.inference_mode():
            output = torch_model.generate(input_ids=torch.tensor([ids]),
                                          attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                          generation_config=greedy)[0].tolist()[1:]
        references.append({"prompt": prompt, "input_ids": ids, "output_ids": output,
                           "text": tokenizer.decode(output, skip_special_tokens=True),
                           "max_new_tokens": max_new_tokens})
    return references


def verify_bundle(bundle: Bundle, references: list[dict], *, quantized: bool,
                  min_token_agreement: float | None = None, model: str = "") -> dict:
    """Greedy outputs of the bundle, run by sumctl's own runtime, against PyTorch's.

    fp32 must match token for token (and decode to the same text), or the export fails. int8
    cannot match exactly; its token agreement and ROUGE-L against the fp32 PyTorch output are
    recorded for users to judge. With `min_token_agreement` (int4's INT4_MIN_TOKEN_AGREEMENT) a
    quantized bundle below it is refused, naming `model` and int8 as the way out.
    """
    from sumctl.runtime.backends.onnx_t5 import OnnxT5Backend

    backend = OnnxT5Backend(bundle, threads=None)
    started = time.perf_counter()
    try:
        per_input, equal, positions, rouge = [], 0, 0, []
        for i, ref in enumerate(references):
            ids, reference = ref["input_ids"], ref["output_ids"]
            if backend.encode(ref["prompt"]) != ids:
                raise ExportError(f"{bundle.file('tokenizer')}: the bundle's tokenizer does not reproduce "
                                  f"the checkpoint's tokenization (verification input {i + 1})")
            produced = backend.generate_ids([ids], max_new_tokens=ref["max_new_tokens"])[0]
            same = sum(a == b for a, b in zip(reference, produced))
            span = max(len(reference), len(produced), 1)
            equal, positions = equal + same, positions + span
            out_text = backend.decode(produced)
            score = _rouge_l(ref["text"], out_text)
            rouge.append(score)
            per_input.append({"input_tokens": len(ids), "reference_tokens": len(reference),
                              "bundle_tokens": len(produced), "token_agreement": round(same / span, 4),
                              "identical": reference == produced, "rouge_l": round(score, 4)})
            if not quantized and (reference != produced or ref["text"] != out_text):
                first = next((j for j, (a, b) in enumerate(zip(reference, produced)) if a != b),
                             min(len(reference), len(produced)))
                what = "tokens" if reference != produced else "decoded text"
                raise ExportError(f"verification failed: the fp32 bundle's greedy {what} differ from "
                                  f"PyTorch's on built-in input {i + 1} (first at position {first}); "
                                  "nothing was written. Please report this with the checkpoint's config.json")
    finally:
        backend.close()
    verification = {
        "verified": True,
        "method": "greedy decoding, sumctl runtime vs transformers PyTorch fp32",
        "inputs": len(references),
        "max_new_tokens": references[0]["max_new_tokens"] if references else 0,
        "identical": all(p["identical"] for p in per_input),
        "token_agreement": round(equal / max(positions, 1), 4),
        "rouge_l": round(sum(rouge) / max(len(rouge), 1), 4),
        "requirement": "token-identical",
        "per_input": per_input,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if quantized:
        _judge_quantized(verification, bundle, min_token_agreement, model)
    return verification


def _judge_quantized(verification: dict, bundle: Bundle, floor: float | None, model: str) -> None:
    """A quantized bundle's requirement in `verification`; an ExportError below `floor`."""
    quantization = verification["quantization"] = bundle.manifest.quantization
    if floor is None:
        verification["requirement"] = f"reported ({quantization})"
        return
    verification.update(requirement=f"token agreement >= {floor} ({quantization})", min_token_agreement=floor)
    if verification["token_agreement"] < floor:
        raise ExportError(f"{model or bundle.manifest.source.get('model')}: the {quantization} bundle agrees "
                          f"with PyTorch fp32 on {verification['token_agreement']:.1%} of greedy tokens "
                          f"(ROUGE-L {verification['rouge_l']:.3f}), below the {floor:.0%} it must reach; "
                          "nothing was written. Use --quantize int8")


def _rouge_l(reference: str, candidate: str) -> float:
    from rouge_score import rouge_scorer

    if not reference.strip() and not candidate.strip():
        return 1.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return scorer.score(reference, candidate)["rougeL"].fmeasure


def describe_verification(verification: dict) -> str:
    if verification.get("requirement") == "token-identical":
        return (f"verified: greedy tokens identical to PyTorch on {verification['inputs']} inputs")
    return (f"verified: {verification.get('quantization', 'int8')} vs PyTorch fp32 token agreement {verification['token_agreement']:.1%}, "
            f"ROUGE-L {verification['rouge_l']:.3f} on {verification['inputs']} inputs")


"""The causal-LM loss on the reply positions only (head applied where labels are) equals the
model's own full-logits loss, on tiny random llama and Gemma 3 models built here."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sumctl.exporters.train.data import IGNORE_INDEX  # noqa: E402
from sumctl.exporters.train.run import reply_loss  # noqa: E402


def tiny_llama():
    return transformers.LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)


def tiny_gemma3():
    # Sliding and full layers, query/key norms, tied and scaled embeddings; a window shorter
    # than the inputs so the sliding layers really slide.
    return transformers.Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
                                         head_dim=16, sliding_window=4, max_position_embeddings=128,
                                         layer_types=["sliding_attention", "sliding_attention", "full_attention"])


def batch(vocab: int, seed: int):
    """Two examples padded to one length: a prompt (label -100) then a reply, the second shorter."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    labels = ids.clone()
    labels[:, :7] = IGNORE_INDEX
    labels[1, 9:] = IGNORE_INDEX
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("make_config", [tiny_llama, tiny_gemma3], ids=["llama", "gemma3"])
def test_reply_positions_loss_equals_full_logits_loss(make_config):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(make_config()).float().eval()
    with torch.no_grad():  # a random init leaves near-uniform logits, where any loss looks alike
        for p in model.parameters():
            p.mul_(4.0) if p.ndim > 1 else None
    inputs = batch(model.config.vocab_size, seed=1)
    full = model(**inputs).loss
    ours = reply_loss(model, inputs)
    assert full.item() > 1.0
    assert ours.item() == pytest.approx(full.item(), abs=1e-5)
    # The gradients, too: the same loss, reached through the same parameters.
    full_grads = torch.autograd.grad(full, [p for p in model.parameters()], allow_unused=True)
    our_grads = torch.autograd.grad(reply_loss(model, inputs), [p for p in model.parameters()], allow_unused=True)
    for a, b in zip(full_grads, our_grads):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5)

"""Helpers (no tests) for the RoBERTa / XLM-RoBERTa tests: an XLM-R-shaped tokenizer built offline
(no XLM-R tokenizer ships with the test assets) and tiny random RoBERTa / XLM-R folders written by
transformers."""

from __future__ import annotations

import string

import numpy as np
from conftest import WORDS, _save_tiny

PAD = 1  # XLM-R / RoBERTa: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask> last


def write_xlmr_tokenizer(path):
    """A Unigram (sentencepiece-style, Metaspace) tokenizer with XLM-R's special-token layout and
    ``<s> $A </s>`` template, saved as transformers' ``XLMRobertaTokenizer``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import XLMRobertaTokenizerFast

    pieces = ["<s>", "<pad>", "</s>", "<unk>"] + ["▁" + w for w in WORDS] + [w[:3] for w in WORDS] + ["▁"]
    pieces += list(string.ascii_letters + string.digits + string.punctuation)
    scores = {p: 0.0 if p.startswith("<") else -2.0 if p.startswith("▁") and len(p) > 1 else -4.0 for p in pieces}
    vocab = [(p, scores[p]) for p in dict.fromkeys(pieces)] + [("<mask>", 0.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    XLMRobertaTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    ).save_pretrained(str(path))
    return path, len(vocab)


def tiny_config(model_type="xlm-roberta", vocab_size=151, **overrides):
    """Tiny XLM-R / RoBERTa config as the real checkpoints set it (type_vocab_size 1, eps 1e-5,
    max_position_embeddings = max tokens + pad + 1). Two heads: head_dim 16, the fused CPU attention."""
    from transformers import RobertaConfig, XLMRobertaConfig

    kw = dict(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=130, type_vocab_size=1, layer_norm_eps=1e-5, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, pad_token_id=PAD, bos_token_id=0, eos_token_id=2,
    )
    kw.update(overrides)
    return (XLMRobertaConfig if model_type == "xlm-roberta" else RobertaConfig)(**kw)


def save_tiny(path, tokenizer_dir, seed=0, init_scale=None, model_type="xlm-roberta", **overrides):
    return _save_tiny(path, tiny_config(model_type, **overrides), tokenizer_dir, seed, init_scale)


def token_batch(rng, lengths, width, vocab_size=151, left=False):
    """Ids as a tokenizer gives them: <s> ... </s>, then <pad> (mask 0); ``left``: padding first."""
    ids = np.full((len(lengths), width), PAD)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        body = rng.integers(4, vocab_size - 1, size=n)
        body[0], body[-1] = 0, 2
        cols = slice(width - n, width) if left else slice(0, n)
        ids[row, cols], mask[row, cols] = body, 1
    return ids, mask

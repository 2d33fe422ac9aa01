"""``mlx_hf_bridge.transformers.pipeline`` = ``transformers.pipeline`` on torch, same saved folders
(tiny BERT with the WordPiece tokenizer, tiny ModernBERT with the BPE one; heads made and saved by
transformers with a larger init so the tokens' predictions differ): text-classification (top_k forms,
function_to_apply, pairs, problem types), fill-mask (top_k, several masks, targets), token-classification
(every aggregation strategy, ignore_labels, pre-split words, stride chunks, batches). Labels, tokens,
words and offsets equal; scores within 1e-4. Runs in .venv (transformers 5.3) and .venv-st6 (5.24).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import tiny_bert_config, tiny_modernbert_config  # noqa: E402
from mlx_hf_bridge.transformers import pipeline  # noqa: E402
from mlx_hf_bridge.transformers.pipelines import PipelineException  # noqa: E402

TOL = 1e-4
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TEXTS = ["Wolfgang lives in Berlin and works at Siemens.", "an unbelievably good day",
         "Paris, Texas is not Paris, France!"]


def _config(arch, **kw):
    if arch == "bert":
        return tiny_bert_config(num_attention_heads=2, **kw)
    return tiny_modernbert_config(vocab_size=50368, pad_token_id=50283, cls_token_id=50281, sep_token_id=50282,
                                  bos_token_id=50281, eos_token_id=50282, **kw)


def _save(folder, task, cfg, tokenizer_dir, seed=0):
    import transformers

    torch.manual_seed(seed)
    model = getattr(transformers, f"AutoModelFor{task}").from_config(cfg).eval()
    with torch.no_grad():  # a larger init: the layers, not the biases, decide
        for name, p in model.named_parameters():
            if p.ndim == 2 and "embeddings" not in name:
                p.normal_(0.0, 0.2)
    model.save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module", params=["bert", "modernbert"])
def arch_folders(request, tmp_path_factory, minilm_dir, modernbert_tokenizer_dir):
    arch = request.param
    tok_dir = minilm_dir if arch == "bert" else modernbert_tokenizer_dir
    root = tmp_path_factory.mktemp(f"pipelines-{arch}")
    labels = {"id2label": {0: "negative", 1: "neutral", 2: "positive"}}
    return arch, {
        "seq": _save(root / "seq", "SequenceClassification", _config(arch, num_labels=3, **labels), tok_dir),
        "multi": _save(root / "multi", "SequenceClassification",
                       _config(arch, num_labels=3, problem_type="multi_label_classification", **labels), tok_dir, 1),
        "one": _save(root / "one", "SequenceClassification", _config(arch, num_labels=1), tok_dir, 2),
        "tok": _save(root / "tok", "TokenClassification",
                     _config(arch, num_labels=5, id2label=dict(enumerate(TAGS))), tok_dir, 3),
        "mlm": _save(root / "mlm", "MaskedLM", _config(arch), tok_dir, 4),
    }


def both(task, folder, **kwargs):
    import transformers

    return transformers.pipeline(task, model=folder, device="cpu", **kwargs), pipeline(task, model=folder, **kwargs)


def assert_same(got, want, path="out"):
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (path, got, want)
        for key in want:
            assert_same(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, list) and len(got) == len(want), (path, got, want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, (float, np.floating)):
        assert isinstance(got, (float, np.floating)) and abs(float(got) - float(want)) <= TOL, (path, got, want)
    else:
        assert got == want and type(got) is type(want), (path, got, want)


def test_text_classification(arch_folders):
    _, folders = arch_folders
    ref, ours = both("text-classification", folders["seq"])
    for call in (dict(), dict(top_k=None), dict(top_k=2), dict(function_to_apply="sigmoid"),
                 dict(function_to_apply="none", top_k=None)):
        assert_same(ours(TEXTS[0], **call), ref(TEXTS[0], **call))
        assert_same(ours(TEXTS, **call), ref(TEXTS, **call))
    pair = {"text": TEXTS[0], "text_pair": TEXTS[1]}
    assert_same(ours(pair), ref(pair))
    assert_same(ours([pair, pair], batch_size=2), ref([pair, pair], batch_size=2))
    assert_same(ours(TEXTS, batch_size=2, top_k=None), ref(TEXTS, batch_size=2, top_k=None))
    # top_k given at construction: the call without it still wraps a single text (transformers' rule)
    ref_all, ours_all = both("sentiment-analysis", folders["seq"], top_k=None)
    assert_same(ours_all(TEXTS[1]), ref_all(TEXTS[1]))
    for kind in ("multi", "one"):  # sigmoid by default for multi-label and for one label
        ref_k, ours_k = both("text-classification", folders[kind])
        assert_same(ours_k(TEXTS, top_k=None), ref_k(TEXTS, top_k=None))
        assert_same(ours_k(TEXTS[2]), ref_k(TEXTS[2]))


def test_fill_mask(arch_folders):
    _, folders = arch_folders
    ref, ours = both("fill-mask", folders["mlm"])
    mask = ref.tokenizer.mask_token
    one, two = f"Paris is the {mask} of France.", f"The {mask} sat on the {mask}."
    assert_same(ours(one), ref(one))
    assert_same(ours(one, top_k=3), ref(one, top_k=3))
    assert_same(ours(two, top_k=2), ref(two, top_k=2))
    assert_same(ours([one]), ref([one]))
    assert_same(ours([one, two], batch_size=2), ref([one, two], batch_size=2))
    targets = ["city", "capital", "the", "zyzzogeton"]  # the last is split: its first piece stands in
    assert_same(ours(one, targets=targets), ref(one, targets=targets))
    with pytest.raises(PipelineException, match="No mask_token"):
        ours("no mask here")


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification(arch_folders, strategy):
    _, folders = arch_folders
    ref, ours = both("ner", folders["tok"], aggregation_strategy=strategy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the BPE tokenizer's 'fallback heuristic' warning
        for call in (dict(), dict(ignore_labels=[])):
            assert_same(ours(TEXTS[0], **call), ref(TEXTS[0], **call))
            assert_same(ours(TEXTS, batch_size=2, **call), ref(TEXTS, batch_size=2, **call))
        words = TEXTS[2].split()
        split = dict(is_split_into_words=True)
        assert_same(ours(words, **split), ref(words, **split))
        if strategy != "none":  # stride: overlapping chunks of a long text (transformers refuses it with "none")
            long_text = " ".join(TEXTS * 3)
            for pipe in (ref, ours):
                pipe.tokenizer.model_max_length = 24
            assert_same(ours(long_text, stride=6), ref(long_text, stride=6))


def test_model_objects_task_inference_and_bad_input(arch_folders):
    from mlx_hf_bridge.transformers import AutoModelForTokenClassification, AutoTokenizer

    _, folders = arch_folders
    model = AutoModelForTokenClassification.from_pretrained(folders["tok"])
    model.train()  # a model fresh from training: the pipeline runs it in eval mode and puts it back
    ner = pipeline(model=model, tokenizer=AutoTokenizer.from_pretrained(folders["tok"]))
    import transformers

    want = transformers.pipeline("ner", model=folders["tok"], device="cpu")(TEXTS[0])
    assert_same(ner(TEXTS[0]), want)
    assert model.training
    assert type(pipeline(model=folders["seq"])).__name__ == "TextClassificationPipeline"  # from architectures
    with pytest.raises(KeyError, match="Unknown task 'summarization'.*text-classification"):
        pipeline("summarization", model=folders["seq"])
    with pytest.raises(ValueError, match="needs model="):
        pipeline("fill-mask")
    with pytest.raises(ValueError, match="aggregation_strategy='longest' is not one of"):
        pipeline("ner", model=folders["tok"], aggregation_strategy="longest")
    with pytest.raises(ValueError, match="function_to_apply='tanh'"):
        pipeline("text-classification", model=folders["seq"])(TEXTS[0], function_to_apply="tanh")

"""ColBERTCollator and KDProcessing against real PyLate 1.6 on the same rows and the same folder."""

from __future__ import annotations

import logging

import mlx.core as mx
import numpy as np
import pytest

from mlx_hf_bridge.pylate import models as mlx_models
from mlx_hf_bridge.pylate import utils as mlx_utils


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_bert_dir):
    import torch
    from pylate import models

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("collator-colbert")
    models.ColBERT(str(tiny_bert_dir), device="cpu", query_length=12, document_length=20).save(str(folder))
    return models.ColBERT(str(folder), device="cpu"), mlx_models.ColBERT(str(folder))


TRIPLETS = [
    {"query_id": "q1", "query": "what is mlx?", "positive": "MLX is an array framework.", "negative": "Bananas!", "label": 1},
    {"query_id": "q2", "query": "capital of france", "positive": "Paris, the capital.", "negative": "Berlin; no.", "label": 0},
    {"query_id": "q3", "query": "why is the sky blue, really?", "positive": "Rayleigh scattering of light by the air.",
     "negative": "a b c d e f g h i j k l m n o p q r s t u v w x y z", "label": 1},
]
KD_ROWS = [
    {"query_id": 1, "document_ids": [10, 11, 12], "query": "first query", "documents": ["d one.", "d two!", "d three"],
     "scores": [0.9, 0.5, 0.1]},
    {"query_id": 2, "document_ids": [13, 14, 15], "query": "second, query", "documents": ["x", "y; z", "long " * 30],
     "scores": [12.0, 3.0, -1.0]},
]
ANCHOR_ROWS = [
    {"anchor": "an anchor text", "question": "is a question a document?", "positive": "yes it is", "negative_2": "no"},
    {"anchor": "another anchor", "question": "second question", "positive": "positive two", "negative_2": "neg two"},
]
MULTI_ROWS = [
    {"dataset_name": "msmarco", "query": "q text", "positive": "p text", "scores": [1.5]},
    {"dataset_name": "msmarco", "query": "q other", "positive": "p other", "scores": [0.5]},
]


def assert_same_batch(torch_batch: dict, mlx_batch: dict):
    assert list(torch_batch) == list(mlx_batch)
    for key, expected in torch_batch.items():
        got = mlx_batch[key]
        if hasattr(expected, "numpy"):
            assert isinstance(got, mx.array), key
            expected = expected.numpy()
            got = np.array(got)
            assert expected.shape == got.shape, key
            assert expected.dtype.kind == got.dtype.kind, (key, expected.dtype, got.dtype)
            np.testing.assert_allclose(got, expected, rtol=0, atol=0, err_msg=key)
        else:
            assert got == expected, key


def both_collators(pair, **kwargs):
    from pylate import utils

    torch_model, mlx_model = pair
    return utils.ColBERTCollator(torch_model.tokenize, **kwargs), mlx_utils.ColBERTCollator(mlx_model.tokenize, **kwargs)


@pytest.mark.parametrize("rows", [TRIPLETS, KD_ROWS, ANCHOR_ROWS], ids=["triplets", "kd", "anchor-question"])
def test_collator_matches_pylate(pair, rows):
    torch_collator, mlx_collator = both_collators(pair)
    torch_batch, mlx_batch = torch_collator(rows), mlx_collator(rows)
    assert_same_batch(torch_batch, mlx_batch)
    assert mlx_batch["return_loss"] is True
    assert not any(k.startswith(("query_id", "document_ids")) for k in mlx_batch)


def test_collator_shapes_and_roles(pair):
    _, mlx_model = pair
    _, collator = both_collators(pair)
    batch = collator(KD_ROWS)
    assert batch["query_input_ids"].shape == (2, mlx_model.query_length)  # queries: pad=True, expansion
    assert batch["documents_input_ids"].shape == (6, mlx_model.document_length)  # flattened, padded
    assert batch["label"].dtype == mx.float32 and batch["label"].shape == (2, 3)
    batch = collator(ANCHOR_ROWS)
    # "question" has neither "query" nor "anchor" in its name: tokenized as a document ([D] prefix)
    assert int(batch["question_input_ids"][0, 1]) == mlx_model.document_prefix_id
    assert int(batch["anchor_input_ids"][0, 1]) == mlx_model.query_prefix_id


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompts": "search: "},
        {"prompts": {"query": "query: ", "positive": "passage: "}, "include_prompt_lengths": True},
        {"prompts": {"msmarco": {"query": "q: "}}, "router_mapping": {"msmarco": {"query": "query"}},
         "include_prompt_lengths": True, "all_special_ids": {102}},
        {"valid_label_columns": ["score", "scores"]},
    ],
    ids=["prompt-str", "prompt-dict", "nested-dataset", "label-columns"],
)
def test_collator_options_match_pylate(pair, kwargs):
    torch_collator, mlx_collator = both_collators(pair, **kwargs)
    rows = MULTI_ROWS if "msmarco" in str(kwargs) or "valid_label_columns" in kwargs else TRIPLETS
    assert_same_batch(torch_collator(rows), mlx_collator(rows))


def test_collator_nested_prompts_without_dataset_raise(pair):
    _, mlx_collator = both_collators(pair, prompts={"msmarco": {"query": "q: "}})
    with pytest.raises(ValueError, match="nested dictionary"):
        mlx_collator(TRIPLETS)


def test_collator_column_order_warning_matches(pair, caplog):
    torch_collator, mlx_collator = both_collators(pair)
    rows = [{"positive": "p", "anchor": "a"}]
    with caplog.at_level(logging.WARNING):
        torch_collator(rows)
        torch_collator(rows)  # once per column list
        mlx_collator(rows)
        mlx_collator(rows)
    torch_msgs = [r.getMessage() for r in caplog.records if r.name.startswith("pylate")]
    mlx_msgs = [r.getMessage() for r in caplog.records if r.name.startswith("mlx_hf_bridge")]
    assert len(torch_msgs) == 1 and mlx_msgs == torch_msgs


# --- KDProcessing ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kd_data():
    import datasets

    queries = datasets.Dataset.from_dict({"query_id": [1, 2], "text": ["first query", "second query"]})
    documents = datasets.Dataset.from_dict({"document_id": [10, 11, 12, 13], "text": ["ten", "eleven", "twelve", "13"]})
    train = datasets.Dataset.from_dict(
        {
            "query_id": [1, 2],
            "document_ids": ["[10, 11, 99]", "[12, 13, 10]"],  # string-encoded, one missing id
            "scores": ["[0.9, 0.5, 0.1]", "[3.0, 2.0, 1.0]"],
        }
    )
    return queries, documents, train


@pytest.mark.parametrize("n_ways", [2, 32])
def test_kd_processing_matches_pylate(kd_data, n_ways):
    import datasets
    from pylate import utils

    queries, documents, train = kd_data
    ours = mlx_utils.KDProcessing(queries=queries, documents=documents, n_ways=n_ways)
    theirs = utils.KDProcessing(queries=queries, documents=documents, n_ways=n_ways)
    assert train.map(ours.map).to_list() == train.map(theirs.map).to_list()

    def transformed(kd):
        ds = train.with_transform(kd.transform)
        return [ds[i] for i in range(len(ds))]

    assert transformed(ours) == transformed(theirs)
    # DatasetDict inputs pick the split
    ours_dd = mlx_utils.KDProcessing(
        queries=datasets.DatasetDict({"train": queries}), documents=datasets.DatasetDict({"train": documents})
    )
    assert ours_dd.map(dict(train[0]))["query"] == "first query"


def test_kd_rows_through_both_collators(pair, kd_data):
    from pylate import utils

    queries, documents, train = kd_data
    rows = train.map(utils.KDProcessing(queries=queries, documents=documents, n_ways=3).map).to_list()
    torch_collator, mlx_collator = both_collators(pair)
    assert_same_batch(torch_collator(rows), mlx_collator(rows))


# --- small helpers ----------------------------------------------------------------------------------
def test_utils_helpers():
    import doctest

    from pylate import utils

    assert list(mlx_utils.iter_batch(list(range(5)), 2, tqdm_bar=False)) == list(
        utils.iter_batch(list(range(5)), 2, tqdm_bar=False)
    )
    for x in ([[1.0, 2.0]], [np.array([1.0, 2.0])], np.ones((2, 3), dtype=np.float32), []):
        np.testing.assert_array_equal(np.array(mlx_utils.convert_to_tensor(x)), utils.convert_to_tensor(x).numpy())
    assert (mlx_utils.get_rank(), mlx_utils.get_world_size()) == (utils.get_rank(), utils.get_world_size()) == (0, 1)
    result = doctest.testmod(mlx_utils)
    assert result.failed == 0 and result.attempted > 0


def test_preprocess_spelling_of_pylates_st_v6_branch(pair):
    """``ColBERTCollator(preprocess_fn=model.preprocess)`` (PyLate's sentence-transformers-v6 branch,
    whose examples already use it) gives PyLate 1.6's batch for ``ColBERTCollator(model.tokenize)``."""
    from pylate import utils

    torch_model, mlx_model = pair
    expected = utils.ColBERTCollator(torch_model.tokenize)(TRIPLETS)
    assert_same_batch(expected, mlx_utils.ColBERTCollator(preprocess_fn=mlx_model.preprocess)(TRIPLETS))
    by_texts = mlx_model.preprocess(texts=["what is mlx?"], is_query=True)
    by_inputs = mlx_model.preprocess(["what is mlx?"])
    assert np.array_equal(np.array(by_texts["input_ids"]), np.array(by_inputs["input_ids"]))
    with pytest.raises(TypeError, match="model.tokenize"):
        mlx_utils.ColBERTCollator()

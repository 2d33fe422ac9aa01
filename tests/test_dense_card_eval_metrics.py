"""Evaluator results in the dense model card: a bridge trainer run with evaluators (their metrics stored
through ``model.model_card_data.set_evaluation_metrics``, as ST's evaluators do) writes the same
``## Evaluation`` section and the same YAML ``metrics`` / ``model-index`` results as the installed
sentence-transformers (5.3 in .venv, 6.2 in .venv-st6) renders for the same metrics dicts: merged
tables for one evaluator class on several datasets, the primary metric in bold, parameters as JSON."""

from __future__ import annotations

import random

import pytest
import yaml

torch = pytest.importorskip("torch")

from conftest import ST_MAJOR, random_sentence  # noqa: E402

if ST_MAJOR >= 6:
    from sentence_transformers.sentence_transformer import evaluation as st_evaluation
else:
    from sentence_transformers import evaluation as st_evaluation


def evaluation_section(readme: str) -> str:
    start = readme.index("## Evaluation")
    ends = [i for i in (readme.find("<!--", start), readme.find("\n## ", start + 1), readme.find("\n### Framework", start))
            if i != -1]
    return readme[start:min(ends)].strip()


def front_matter(readme: str) -> dict:
    return yaml.safe_load(readme.split("---\n")[1])


def make_evaluators(evaluation):
    rng = random.Random(3)
    s = [[random_sentence(rng, 2, 10, [","]) for _ in range(12)] for _ in range(3)]
    scores = [rng.random() for _ in range(12)]
    return [
        evaluation.EmbeddingSimilarityEvaluator(s[0], s[1], scores, name="sts-dev"),
        evaluation.EmbeddingSimilarityEvaluator(s[1], s[2], scores, name="sts-test"),
        evaluation.TripletEvaluator(s[0], s[1], s[2], name="trip", truncate_dim=16),
        evaluation.BinaryClassificationEvaluator(s[0], s[2], [i % 2 for i in range(12)]),  # no name
    ]


def test_trainer_run_card_has_st_evaluation_section(tiny_bert_dir, tmp_path):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer as TorchST

    from mlx_hf_bridge.sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        evaluation,
        losses,
    )

    model = SentenceTransformer(str(tiny_bert_dir))
    rng = random.Random(0)
    rows = {"anchor": [random_sentence(rng, 2, 10, [","]) for _ in range(16)],
            "positive": [random_sentence(rng, 2, 10, ["."]) for _ in range(16)]}
    ours = make_evaluators(evaluation)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, max_steps=4, learning_rate=5e-4,
        eval_strategy="steps", eval_steps=2, save_strategy="no", logging_steps=1, seed=0, disable_tqdm=True,
        report_to="none")
    loss = losses.AdaptiveLayerLoss(model, losses.MultipleNegativesRankingLoss(model))  # trained through the trainer
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(rows), loss=loss,
                                         evaluator=evaluation.SequentialEvaluator(ours))
    trainer.train()
    stored = model.model_card_data.eval_results_dict
    assert list(stored) == ours and all(stored[e] for e in ours)
    assert stored[ours[0]]["sts-dev_spearman_cosine"] == trainer.evaluate()["eval_sts-dev_spearman_cosine"]
    model.save(str(tmp_path / "ours"))
    readme = (tmp_path / "ours" / "README.md").read_text()

    # the same metrics dicts, stored by ST's own evaluators into ST's card data, rendered by ST
    torch_model = TorchST(str(tiny_bert_dir), device="cpu")
    for ev, st_ev in zip(ours, make_evaluators(st_evaluation)):
        st_ev.primary_metric = ev.primary_metric  # set by the evaluators' first call (name prefix)
        assert st_ev.description == ev.description and st_ev.get_config_dict() == ev.get_config_dict()
        torch_model.model_card_data.set_evaluation_metrics(st_ev, stored[ev], 1, 4)
    torch_model.save(str(tmp_path / "st"))
    reference = (tmp_path / "st" / "README.md").read_text()
    section = evaluation_section(readme)
    print(section)
    assert section == evaluation_section(reference)
    assert "| **spearman_cosine** |" in section and "* Datasets: `sts-dev` and `sts-test`" in section
    assert '"truncate_dim": 16' in section
    got, want = front_matter(readme), front_matter(reference)
    assert got["metrics"] == want["metrics"]
    assert got["model-index"][0]["results"] == want["model-index"][0]["results"]


def test_no_evaluator_no_section(tiny_bert_dir, tmp_path):
    from mlx_hf_bridge.sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_bert_dir))
    assert model.model_card_data.eval_results_dict == {}
    model.save(str(tmp_path / "plain"))
    readme = (tmp_path / "plain" / "README.md").read_text()
    assert "## Evaluation" not in readme and "model-index" not in readme


def test_multi_vector_card_has_st6_evaluation_section(tiny_bert_dir, tmp_path):
    """The multi-vector card (same renderer): ST 6.2's multi_vector_encoder template and links."""
    pytest.importorskip("sentence_transformers", minversion="6")
    from sentence_transformers import MultiVectorEncoder as TorchEncoder
    from sentence_transformers.multi_vector_encoder import evaluation as st_mv_evaluation

    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder
    from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import evaluation as mv_evaluation

    rng = random.Random(5)
    s = [[random_sentence(rng, 2, 10, [","]) for _ in range(6)] for _ in range(3)]
    model = MultiVectorEncoder(str(tiny_bert_dir))
    ours = mv_evaluation.MultiVectorTripletEvaluator(*s, name="mv-trip")
    metrics = ours(model)
    assert model.model_card_data.eval_results_dict == {ours: metrics}
    model.save(str(tmp_path / "ours"))
    torch_model = TorchEncoder(str(tiny_bert_dir), device="cpu")
    theirs = st_mv_evaluation.MultiVectorTripletEvaluator(*s, name="mv-trip")
    theirs.primary_metric = ours.primary_metric
    torch_model.model_card_data.set_evaluation_metrics(theirs, metrics)
    torch_model.save(str(tmp_path / "st"))
    readme, reference = ((tmp_path / d / "README.md").read_text() for d in ("ours", "st"))
    assert evaluation_section(readme) == evaluation_section(reference)
    assert "multi_vector_encoder/evaluation.html" in evaluation_section(readme)
    assert front_matter(readme)["model-index"][0]["results"] == front_matter(reference)["model-index"][0]["results"]


def training_log_header(readme: str) -> tuple[str, int]:
    lines = readme[readme.index("### Training Logs"):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Epoch"))
    rows = 0
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows += 1
    return " ".join(lines[start].split()), rows


def test_training_logs_show_the_primary_metrics_as_st(tiny_bert_dir, tmp_path):
    """ST's trainer card logs each evaluator's primary metric per evaluation step (not every metric)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer as TorchST

    if ST_MAJOR >= 6:
        from sentence_transformers.sentence_transformer import losses as st_losses
        from sentence_transformers.sentence_transformer import trainer as st_trainer
        from sentence_transformers.sentence_transformer import training_args as st_args
    else:
        from sentence_transformers import losses as st_losses
        from sentence_transformers import trainer as st_trainer
        from sentence_transformers import training_args as st_args
    from mlx_hf_bridge import sentence_transformers as bridge
    from mlx_hf_bridge.sentence_transformers import evaluation as bridge_evaluation
    from mlx_hf_bridge.sentence_transformers import losses as bridge_losses

    rng = random.Random(1)
    data = Dataset.from_dict({"anchor": [random_sentence(rng, 2, 10, [","]) for _ in range(16)],
                              "positive": [random_sentence(rng, 2, 10, ["."]) for _ in range(16)]})
    common = dict(per_device_train_batch_size=8, max_steps=4, learning_rate=5e-4, eval_strategy="steps",
                  eval_steps=2, save_strategy="no", logging_steps=1, seed=0, disable_tqdm=True, report_to="none")
    readmes = {}
    for side in ("st", "ours"):
        if side == "st":
            model = TorchST(str(tiny_bert_dir), device="cpu")
            args = st_args.SentenceTransformerTrainingArguments(output_dir=str(tmp_path / side), **common)
            trainer_cls, side_losses, side_eval = st_trainer.SentenceTransformerTrainer, st_losses, st_evaluation
        else:
            model = bridge.SentenceTransformer(str(tiny_bert_dir))
            args = bridge.SentenceTransformerTrainingArguments(output_dir=str(tmp_path / side), **common)
            trainer_cls, side_losses, side_eval = bridge.SentenceTransformerTrainer, bridge_losses, bridge_evaluation
        evaluator = side_eval.SequentialEvaluator(make_evaluators(side_eval)[:3])
        trainer_cls(model=model, args=args, train_dataset=data, loss=side_losses.MultipleNegativesRankingLoss(model),
                    evaluator=evaluator).train()
        model.save(str(tmp_path / side / "final"))
        readmes[side] = (tmp_path / side / "final" / "README.md").read_text()
    header, rows = training_log_header(readmes["ours"])
    print(header, rows)
    assert (header, rows) == training_log_header(readmes["st"])
    assert "sts-dev_spearman_cosine" in header and "pearson" not in header

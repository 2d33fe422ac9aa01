"""Write a small synthetic ReasonIR ``hq`` dataset and BRIGHT ``documents`` table, offline.

The files mirror the two Hub repositories, so ``datasets.load_dataset(<folder>, <config>)`` reads them
exactly as it reads the real ones (a README with ``configs:`` metadata plus data files):

    <out>/reasonir-data/   config "hq":        split train   (query, pos, neg)
    <out>/BRIGHT/          config "documents": one split per task (id, content)

Raw ``hq`` shape (as on the Hub, where positives carry BRIGHT ids, not text):

    query: [instruction, query_text]
    pos:   [[instruction, bright_document_id], ...]
    neg:   [[instruction, negative_text], ...]

Row 0's negative text is, on purpose, exactly a BRIGHT document id: a correct pipeline keeps it as
text (negatives are never looked up).

    python make_synthetic.py --out data/synthetic --queries 48
    python prepare_dataset.py --data data/synthetic/reasonir-data --documents data/synthetic/BRIGHT \\
        --out data/reasonir-hq-prepared
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TASKS = ("biology", "earth_science", "economics", "psychology", "robotics", "stackoverflow")

# A few facts per task: (topic words, a sentence a relevant document would contain).
FACTS = {
    "biology": [
        ("mitochondria energy cells", "Mitochondria produce ATP through oxidative phosphorylation in eukaryotic cells."),
        ("photosynthesis leaves light", "Chloroplasts capture light energy and fix carbon dioxide into sugars."),
        ("immune antibodies infection", "B cells secrete antibodies that bind antigens and mark pathogens for removal."),
        ("dna replication enzymes", "DNA polymerase copies each strand during replication using base pairing."),
    ],
    "earth_science": [
        ("earthquakes plates faults", "Earthquakes release strain accumulated where tectonic plates lock along faults."),
        ("ocean tides moon", "Tides are driven mostly by the Moon's gravity acting on the oceans."),
        ("volcano magma eruption", "Magma rich in dissolved gas erupts explosively when pressure drops."),
        ("glaciers ice erosion", "Glaciers carve U-shaped valleys as moving ice grinds the bedrock."),
    ],
    "economics": [
        ("inflation interest rates", "Central banks raise interest rates to slow demand and reduce inflation."),
        ("supply demand price", "A price rises when demand grows faster than supply at the current price."),
        ("trade tariffs imports", "Tariffs raise the domestic price of imports and shift demand to local goods."),
        ("unemployment recession", "Unemployment rises in recessions as firms cut output and hiring."),
    ],
    "psychology": [
        ("memory sleep consolidation", "Sleep helps consolidate new memories by replaying them in the hippocampus."),
        ("anxiety stress response", "Chronic stress keeps cortisol high and can worsen anxiety symptoms."),
        ("habits reward learning", "Habits form when a cue, a routine and a reward repeat until behaviour is automatic."),
        ("attention multitasking", "Switching tasks costs time because attention must be reconfigured each switch."),
    ],
    "robotics": [
        ("pid controller motor", "A PID controller corrects motor speed from the error, its integral and derivative."),
        ("slam mapping localization", "SLAM builds a map while estimating the robot's pose within it."),
        ("inverse kinematics arm", "Inverse kinematics computes joint angles that place the arm's end effector."),
        ("lidar obstacle detection", "Lidar measures distances with laser pulses to detect obstacles."),
    ],
    "stackoverflow": [
        ("python list sort key", "Use sorted(items, key=...) to sort a Python list by a computed key."),
        ("git merge conflict", "Resolve a git merge conflict by editing the marked hunks and committing."),
        ("sql join tables", "An inner join returns rows with matching keys in both tables."),
        ("javascript promise async", "An async function returns a promise that resolves to its return value."),
    ],
}

QUERY_INSTRUCTION = "Given a post from the {task} forum, retrieve passages that help answer it."
DOC_INSTRUCTION = ""  # ReasonIR positives/negatives carry a (doc-side) instruction slot; often empty
FILLER = (
    "This passage discusses the question in some detail.",
    "Several examples illustrate the idea.",
    "The explanation refers to common textbook material.",
    "A short summary closes the section.",
)


def _doc_id(task: str, i: int) -> str:
    return f"{task}/{task}_doc_{i:04d}.txt"


def make(n_queries: int = 48, tasks=TASKS[:3], docs_per_task: int = 24, seed: int = 0):
    """Returns ``(hq_rows, documents_by_task)`` in the raw Hub shapes."""
    rng = random.Random(seed)
    documents: dict[str, list[dict]] = {}
    relevant: list[tuple[str, str, str, str]] = []  # (task, topic, fact, doc_id)
    for task in tasks:
        rows = []
        for i in range(docs_per_task):
            topic, fact = FACTS[task][i % len(FACTS[task])]
            body = " ".join([fact, *rng.sample(FILLER, 2), f"(note {i} on {topic})"])
            doc_id = _doc_id(task, i)
            rows.append({"id": doc_id, "content": body})
            relevant.append((task, topic, fact, doc_id))
        documents[task] = rows
    hq = []
    for q in range(n_queries):
        task, topic, fact, doc_id = relevant[rng.randrange(len(relevant))]
        other = relevant[rng.randrange(len(relevant))]
        while other[1] == topic:
            other = relevant[rng.randrange(len(relevant))]
        query_text = f"I keep reading about {topic}. Can someone explain how {topic.split()[0]} works? (post {q})"
        negative_text = f"{other[2]} Unrelated details about {other[1]} follow."
        if q == 0:
            negative_text = documents[tasks[0]][1]["id"]  # a text that happens to be an id: must stay text
        hq.append(
            {
                "query": [QUERY_INSTRUCTION.format(task=task.replace("_", " ")), query_text],
                "pos": [[DOC_INSTRUCTION, doc_id]],
                "neg": [[DOC_INSTRUCTION, negative_text]],
            }
        )
    return hq, documents


def _write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_readme(folder: Path, title: str, configs: dict[str, dict[str, str]]) -> None:
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        for split, path in splits.items():
            lines += [f"  - split: {split}", f"    path: {path}"]
    lines += ["---", "", f"# {title}", "", "Synthetic data written by examples/reasonir/make_synthetic.py.", ""]
    (folder / "README.md").write_text("\n".join(lines), encoding="utf-8")


def write(out, n_queries: int = 48, tasks=TASKS[:3], docs_per_task: int = 24, seed: int = 0) -> dict[str, Path]:
    """Write both Hub-shaped folders under ``out``; returns their paths."""
    out = Path(out)
    hq, documents = make(n_queries, tasks, docs_per_task, seed)
    reasonir, bright = out / "reasonir-data", out / "BRIGHT"
    _write_jsonl(reasonir / "hq" / "train.jsonl", hq)
    _write_readme(reasonir, "reasonir-data (synthetic)", {"hq": {"train": "hq/train.jsonl"}})
    for task, rows in documents.items():
        _write_jsonl(bright / "documents" / f"{task}.jsonl", rows)
    _write_readme(bright, "BRIGHT (synthetic)", {"documents": {t: f"documents/{t}.jsonl" for t in documents}})
    return {"reasonir": reasonir, "bright": bright}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/synthetic")
    parser.add_argument("--queries", type=int, default=48)
    parser.add_argument("--tasks", default=",".join(TASKS[:3]), help=f"comma-separated, from {', '.join(TASKS)}")
    parser.add_argument("--docs_per_task", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    paths = write(args.out, args.queries, tasks, args.docs_per_task, args.seed)
    print(f"ReasonIR hq (raw): {paths['reasonir']}  (load_dataset(path, 'hq'))")
    print(f"BRIGHT documents:  {paths['bright']}  (load_dataset(path, 'documents'))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The README of a sentence-transformers folder -- a dense ``SentenceTransformer`` or an ST 6
``MultiVectorEncoder`` (``card["family"]``) -- in sentence-transformers' card structure (YAML front-matter
with ``library_name: sentence-transformers``, description, Model Details, the usage snippet, training
sections, framework versions, citation)."""

from __future__ import annotations

from .eval_metrics import front_matter_entries, render_section
from .facts import _read_json
from .render import _dataset_phrase, _training_section, _yaml, markdown_table
from .templates import ST_CITATION

DEFAULT_TAGS = ["sentence-transformers", "sentence-similarity", "feature-extraction", "dense"]
DEFAULT_TASK = "semantic textual similarity, semantic search, paraphrase mining, classification, clustering, and more"

USAGE = '''## Usage

### Direct Usage (Sentence Transformers)

First install the Sentence Transformers library:

```bash
pip install -U sentence-transformers
```

Then you can load this model and run inference.
```python
from sentence_transformers import SentenceTransformer

# Download from the 🤗 Hub
model = SentenceTransformer("{model_id}")
# Run inference
sentences = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
]
embeddings = model.encode(sentences)
print(embeddings.shape)
# [3, {dim}]

# Get the similarity scores for the embeddings
similarities = model.similarity(embeddings, embeddings)
print(similarities.shape)
# [3, 3]
```

On Apple Silicon the same calls run on MLX with `from mlx_hf_bridge.sentence_transformers import SentenceTransformer`.
'''


MV_TAGS = ["sentence-transformers", "multi-vector", "colbert", "late-interaction"]
MV_TASK = "semantic search with late interaction"
MV_USAGE = '''## Usage

### Direct Usage (Sentence Transformers)

First install the Sentence Transformers library:

```bash
pip install -U sentence-transformers
```

Then you can load this model and run inference.
```python
from sentence_transformers import MultiVectorEncoder

# Download from the 🤗 Hub
model = MultiVectorEncoder("{model_id}")
# Run inference: one {dim}-dimensional vector per token
query_embeddings = model.encode_query(["What is late interaction?"])
document_embeddings = model.encode_document(["ColBERT scores every query token against every document token."])
scores = model.similarity(query_embeddings, document_embeddings)  # MaxSim
```

On Apple Silicon the same calls run on MLX with `from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder`.
'''
# family -> (model type, default tags, default task, pipeline tag, usage, what the vectors are)
FAMILIES = {
    "sentence-transformers": ("Sentence Transformer", DEFAULT_TAGS, DEFAULT_TASK, "sentence-similarity", USAGE,
                              "a {dim}-dimensional dense vector space"),
    "multi-vector": ("Multi-Vector Encoder", MV_TAGS, MV_TASK, "feature-extraction", MV_USAGE,
                     "sequences of {dim}-dimensional token vectors, compared with MaxSim,"),
}


def dense_facts(folder) -> dict:
    facts = {}
    config = _read_json(folder / "config_sentence_transformers.json") or {}
    if config.get("similarity_fn_name"):
        facts["similarity_fn_name"] = config["similarity_fn_name"]
    return facts


def front_matter(card: dict) -> dict:
    family = FAMILIES[card.get("family", "sentence-transformers")]
    tags = list(card.get("tags") or family[1])
    if card["trained"]:
        extra = ["generated_from_trainer"] + ([f"dataset_size:{card['dataset_size']}"] if card.get("dataset_size") else [])
        extra += [f"loss:{loss['name']}" for loss in card["losses"]]
        tags += [t for t in extra if t not in tags]
    data: dict = {}
    if card.get("language"):
        data["language"] = card["language"]
    if card.get("license"):
        data["license"] = card["license"]
    data["tags"] = tags
    datasets = [d["id"] for d in card["train_datasets"] + card["eval_datasets"] if d.get("id")]
    if datasets:
        data["datasets"] = list(dict.fromkeys(datasets))
    data["pipeline_tag"] = family[3]
    data["library_name"] = "sentence-transformers"
    if card.get("base_model"):
        data["base_model"] = card["base_model"]
    return data


def render_dense_card(card: dict) -> str:
    model_type, _, default_task, _, usage, vectors = FAMILIES[card.get("family", "sentence-transformers")]
    cls = "MultiVectorEncoder" if card.get("family") == "multi-vector" else "SentenceTransformer"
    base = card.get("base_model")
    name = card.get("model_name")
    if not name or name.startswith("PyLate model"):
        name = f"{cls} based on {base}" if base else cls
    dim = card.get("output_dimensionality", "?")
    if base:
        origin = f" finetuned from [{base}](https://huggingface.co/{base})"
    elif card.get("base_model_local"):
        origin = f" finetuned from a local model (`{card['base_model_local']}`)"
    else:
        origin = " trained"
    yaml_data = front_matter(card)
    if card.get("eval_results"):
        yaml_data.update(front_matter_entries(card["eval_results"], name))
    out = ["---", "# For reference on model card metadata, see the spec: https://github.com/huggingface/hub-docs/blob/main/modelcard.md?plain=1",
           "# Doc / guide: https://huggingface.co/docs/hub/model-cards", _yaml(yaml_data), "---", "",
           f"# {name}\n",
           f"This is a [sentence-transformers](https://www.SBERT.net) model{origin}{_dataset_phrase(card['train_datasets'])}. "
           f"It maps inputs to {vectors.format(dim=dim)} and can be used for "
           f"{card.get('task_name') or default_task}."
           + (" It was trained on [Apple MLX](https://github.com/ml-explore/mlx) with `mlx_hf_bridge`." if card["trained"] else "")
           + "\n", "## Model Details\n\n### Model Description", ]
    details = [f"- **Model Type:** {model_type}"]
    if base:
        rev = f" <!-- at revision {card['base_model_revision']} -->" if card.get("base_model_revision") else ""
        details.append(f"- **Base model:** [{base}](https://huggingface.co/{base}){rev}")
    if card.get("max_seq_length") is not None:
        details.append(f"- **Maximum Sequence Length:** {card['max_seq_length']} tokens")
    for label, key in (("Maximum Query Length", "query_length"), ("Maximum Document Length", "document_length")):
        if card.get(key) is not None:
            details.append(f"    - **{label}:** {card[key]} tokens")
    details.append(f"- **Output Dimensionality:** {dim} dimensions")
    details.append(f"- **Similarity Function:** {card.get('dense_similarity') or 'Cosine Similarity'}")
    language = card.get("language")
    if language:
        langs = language if isinstance(language, str) else ", ".join(language)
        details.append(f"- **Language{'s' if not isinstance(language, str) and len(language) > 1 else ''}:** {langs}")
    if card.get("license"):
        details.append(f"- **License:** {card['license']}")
    out.append("\n".join(details) + "\n")
    out.append("### Model Sources\n\n- **Documentation:** [Sentence Transformers Documentation](https://sbert.net)\n"
               "- **Repository:** [Sentence Transformers on GitHub](https://github.com/huggingface/sentence-transformers)\n"
               "- **Hugging Face:** [Sentence Transformers on Hugging Face](https://huggingface.co/models?library=sentence-transformers)\n")
    if card.get("model_string"):
        out.append("### Full Model Architecture\n\n```\n" + card["model_string"].replace("ColBERT(", f"{cls}(", 1) + "\n```\n")
    default_id = "multi_vector_encoder_model_id" if cls == "MultiVectorEncoder" else "sentence_transformers_model_id"
    out.append(usage.replace("{model_id}", card.get("model_id") or default_id).replace("{dim}", str(dim)))
    if card.get("eval_results"):  # what the evaluators stored through model_card_data, rendered as ST does
        generation = "st6" if cls == "MultiVectorEncoder" else getattr(card.get("model"), "generation", "st6")
        out.append(render_section(card["eval_results"], card.get("family", "sentence-transformers"), generation))
    elif card.get("eval_metrics"):
        out.append("## Evaluation\n\n### Metrics\n")
        out.append(markdown_table([{"Metric": k, "Value": v} for k, v in card["eval_metrics"].items()]))
    if card["trained"]:
        out.append(_training_section(card))
    out.append("### Framework Versions\n" + "\n".join(f"- {k}: {v}" for k, v in card["versions"].items()) + "\n")
    out.append(f"## Citation\n\n### BibTeX\n\n#### Sentence Transformers\n```bibtex\n{ST_CITATION}\n```\n")
    return "\n".join(out)

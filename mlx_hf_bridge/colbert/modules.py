"""The two module kinds of a PyLate model: the ``Transformer`` backbone and ``Dense`` projections."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..errors import check_texts, read_json
from ..loading import check_weights_match, load_weights, save_safetensors

IDENTITY = "torch.nn.modules.linear.Identity"

# Dotted torch names as written in Dense/config.json -> MLX functions (torch's GELU is exact erf).
ACTIVATIONS = {
    IDENTITY: lambda x: x,
    "torch.nn.modules.activation.Tanh": mx.tanh,
    "torch.nn.modules.activation.ReLU": nn.relu,
    "torch.nn.modules.activation.GELU": nn.gelu,
    "torch.nn.modules.activation.Sigmoid": mx.sigmoid,
    "torch.nn.modules.activation.SiLU": nn.silu,
}


class Transformer(nn.Module):
    """ST's ``models.Transformer``: the HF backbone plus its tokenizer and ``max_seq_length``."""

    def __init__(self, auto_model, tokenizer, max_seq_length=None, do_lower_case=False):
        super().__init__()
        self.auto_model = auto_model
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.do_lower_case = do_lower_case

    def get_word_embedding_dimension(self) -> int:
        return int(self.auto_model.args.hidden_size)

    def tokenize(self, texts, padding=True):
        """ST's Transformer.tokenize: strip, optional lowercase, truncate at ``max_seq_length``.

        Non-string texts are refused: ST raises for one in the first row but ``str()``-converts later
        ones ("3", "None", "nan"), training on text nobody wrote."""
        texts = [t.strip() for t in check_texts(texts)]
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        return dict(
            self.tokenizer(
                texts,
                padding=padding,
                truncation="longest_first",
                return_tensors="np",
                max_length=self.max_seq_length,
            )
        )

    def __call__(self, features: dict) -> dict:
        hidden = self.auto_model(
            features["input_ids"], features["attention_mask"], features.get("token_type_ids")
        )
        return {**features, "token_embeddings": hidden}


class Dense(nn.Module):
    """PyLate's ``models.Dense``: ``token_embeddings = activation(linear(x)) [+ residual]``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation_function=IDENTITY,
        init_weight=None,
        init_bias=None,
        use_residual: bool = False,
    ):
        super().__init__()
        if not isinstance(activation_function, str):  # accept an MLX callable too
            activation_function = getattr(activation_function, "torch_name", IDENTITY)
        if activation_function not in ACTIVATIONS:
            raise ValueError(
                f"Unsupported Dense activation {activation_function!r}; supported: {sorted(ACTIVATIONS)}"
            )
        self.in_features, self.out_features = in_features, out_features
        self.bias = bias
        self.activation_function = activation_function
        self.use_residual = use_residual
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        if init_weight is not None:
            self.linear.weight = mx.array(np.asarray(init_weight, dtype=np.float32))
        if init_bias is not None and bias:
            self.linear.bias = mx.array(np.asarray(init_bias, dtype=np.float32))
        if use_residual and in_features != out_features:
            self.residual = nn.Linear(in_features, out_features, bias=False)

    def __call__(self, features: dict) -> dict:
        x = features["token_embeddings"]
        out = ACTIVATIONS[self.activation_function](self.linear(x))
        if self.use_residual:
            out = out + (self.residual(x) if "residual" in self else x)
        return {**features, "token_embeddings": out}

    def get_config_dict(self) -> dict:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias,
            "activation_function": self.activation_function,
            "use_residual": self.use_residual,
        }

    def save(self, output_path):
        """PyLate's ``Dense.save``: ``config.json`` + ``model.safetensors``; other files in the folder stay."""
        from ..io_utils import save_folder

        tensors = {"linear.weight": self.linear.weight}
        if self.bias:
            tensors["linear.bias"] = self.linear.bias
        if "residual" in self:
            tensors["residual.weight"] = self.residual.weight

        def write(folder: Path):
            self._write_config(folder)
            save_safetensors(folder / "model.safetensors", tensors)

        save_folder(output_path, write)

    def _write_config(self, folder: Path):
        (folder / "config.json").write_text(json.dumps(self.get_config_dict(), indent=2))

    @staticmethod
    def load(input_path) -> "Dense":
        """Read a PyLate or sentence-transformers Dense folder (safetensors or pytorch_model.bin)."""
        input_path = Path(input_path)
        config_path = input_path / "config.json"
        if not config_path.exists():
            raise FileNotFoundError(f"Dense layer folder {input_path} has no config.json.")
        config = read_json(config_path, "the Dense module's settings")
        dense = Dense(
            in_features=config["in_features"],
            out_features=config["out_features"],
            bias=config.get("bias", True),
            activation_function=config.get("activation_function", IDENTITY),
            use_residual=config.get("use_residual", False),
        )
        weights = load_weights(input_path)
        check_weights_match(dense, weights, input_path, config_name="the Dense config.json")
        dense.load_weights([(k, v.astype(mx.float32)) for k, v in weights.items()], strict=True)
        return dense

    @staticmethod
    def from_stanford_weights(weights: dict) -> "Dense":
        """Stanford ``HF_ColBERT`` keeps the projection as root-level ``linear.weight`` [out, in]."""
        weight = weights["linear.weight"]
        out_features, in_features = weight.shape
        return Dense(in_features, out_features, bias=False, init_weight=np.array(weight.astype(mx.float32)))


def resize_token_embeddings(backbone, new_size: int, seed: int = 0):
    """transformers' ``resize_token_embeddings`` with ``mean_resizing``.

    New rows are drawn from N(mean, 1e-9 * cov) of the old rows (so ``[Q]``/``[D]`` start at the
    mean embedding, slightly apart); shrinking truncates. Vocab size in the config follows.
    """
    embedding = backbone.get_input_embeddings()
    old = np.array(embedding.weight.astype(mx.float32))
    old_size, dim = old.shape
    if new_size == old_size:
        return
    if new_size < old_size:
        new = old[:new_size]
    else:
        mean = old.mean(axis=0)
        centered = old - mean
        cov = centered.T @ centered / old_size
        rng = np.random.default_rng(seed)
        try:
            chol = np.linalg.cholesky(1e-9 * cov.astype(np.float64))
            extra = mean + rng.standard_normal((new_size - old_size, dim)) @ chol.T
        except np.linalg.LinAlgError:  # not positive definite: transformers uses the mean
            extra = np.tile(mean, (new_size - old_size, 1))
        new = np.concatenate([old, extra.astype(np.float32)], axis=0)
    resized = nn.Embedding(new_size, dim)
    resized.weight = mx.array(new).astype(embedding.weight.dtype)
    backbone.set_input_embeddings(resized)
    backbone.args.vocab_size = new_size
    backbone.config.vocab_size = new_size

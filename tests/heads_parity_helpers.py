"""Shared pieces of the head-parity tests for the added architectures (tests/test_transformers_heads_*.py):
torch models at transformers' init or a larger one, padded batches, labels per problem type, and the
comparisons (logits at real tokens, losses, gradients)."""

from __future__ import annotations

import copy

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten


def scaled(model, torch, init_scale=None, seed=0):
    """``model`` with its weights redrawn at std ``init_scale`` (matrices other than embeddings) and
    biases / norm vectors at std 0.1, so the layers dominate the logits."""
    if init_scale is None:
        return model.eval()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1 and "embed" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * init_scale)
            elif p.dim() == 1 and ("bias" in name or "norm" in name.lower()):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (0.0 if "bias" in name else p.mean()))
    return model.eval()


def padded_batch(torch, vocab, pad_id, seed=0, rows=3, length=12, left=False, low=5):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(low, vocab, (rows, length), generator=g)
    mask = torch.ones_like(ids)
    for row, keep in ((1, length - 4), (2, 5)):
        if rows > row:
            if left:
                mask[row, : length - keep] = 0
            else:
                mask[row, keep:] = 0
    ids[mask == 0] = pad_id
    return ids, mask


def labels_for(torch, task, problem, num_labels, ids, mask, vocab, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    n = ids.shape[0]
    if task == "seq":
        if problem == "regression":
            return torch.randn(n, generator=g) if num_labels == 1 else torch.randn(n, num_labels, generator=g)
        if problem == "multi_label_classification":
            return torch.randint(0, 2, (n, num_labels), generator=g).float()
        return torch.randint(0, num_labels, (n,), generator=g)
    labels = torch.randint(0, num_labels if task == "tok" else vocab, ids.shape, generator=g)
    labels[mask == 0] = -100
    if task == "mlm":
        labels[torch.rand(ids.shape, generator=g) < 0.5] = -100
    return labels


def to_mx(t):
    return mx.array(t.numpy())


def real_token_diff(ref, ours, mask):
    diff = np.abs(np.asarray(ref) - np.asarray(ours))
    return float(diff[mask.numpy().astype(bool)].max() if diff.ndim == 3 else diff.max())


def logits_diff(torch, hf, ours_logits, ids, mask):
    """(max |ours - torch float32|, max |ours - torch float64|, max |torch32 - torch64|) at real tokens."""
    with torch.no_grad():
        ref32 = hf(input_ids=ids, attention_mask=mask).logits.numpy()
        ref64 = copy.deepcopy(hf).double()(input_ids=ids, attention_mask=mask).logits.numpy()
    ours = np.array(ours_logits)
    return real_token_diff(ref32, ours, mask), real_token_diff(ref64, ours, mask), real_token_diff(ref64, ref32, mask)


def assert_logits_match(torch, hf, ours_logits, ids, mask, tol=1e-5):
    to32, to64, torch_own = logits_diff(torch, hf, ours_logits, ids, mask)
    # <= tol of torch float32, or no farther from float64 than torch's own float32 rounding (x1.5)
    assert to32 <= tol or to64 <= max(tol, 1.5 * torch_own), (to32, to64, torch_own)
    assert to32 <= 1e-4, (to32, to64, torch_own)
    return to32


def torch_grads(hf, ids, mask, labels):
    """Gradients under every name of each parameter (a tied table is listed under both of its names, torch's
    ``named_parameters`` keeps one, and which one depends on the class), plus the number of distinct tensors."""
    hf.zero_grad()
    hf(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    named = [(n, p) for n, p in hf.named_parameters(remove_duplicate=False) if p.grad is not None]
    return {n: p.grad.numpy() for n, p in named}, len({id(p) for _, p in named})


def mlx_grads(ours, ids, mask, labels):
    def loss_fn(params):
        ours.update(params)
        return ours(to_mx(ids), to_mx(mask), labels=to_mx(labels)).loss

    return {k: np.array(v) for k, v in tree_flatten(mx.grad(loss_fn)(ours.trainable_parameters()))}


def assert_grads_match(torch_ref, grads: dict, tol=1e-4):
    ref, distinct = torch_ref
    # one gradient per distinct torch tensor, under one of its names (a tied decoder has none of its own)
    assert set(grads) <= set(ref) and len(grads) == distinct, sorted(set(grads) ^ set(ref))
    ref = {k: ref[k] for k in grads}
    scale = max(float(np.abs(g).max()) for g in ref.values())
    worst = max(float(np.abs(grads[k] - ref[k]).max()) for k in ref)
    assert worst <= tol * scale, (worst, scale)
    return worst / scale


def assert_same_state(theirs_module, ours):
    ours_state = dict(tree_flatten(ours.parameters()))
    named = list(theirs_module.named_parameters(remove_duplicate=False))  # a tied table under both names
    theirs = dict(named)
    assert set(ours_state) <= set(theirs) and len(ours_state) == len({id(p) for _, p in named}), \
        sorted(set(theirs) ^ set(ours_state))
    for k, v in ours_state.items():
        assert np.array_equal(theirs[k].detach().numpy(), np.array(v)), k


def engine_steps_vs_torch(ours, hf, ids, mask, labels, compile_step, steps=3, lr=1e-3):
    """``steps`` engine AdamW steps (HF's decay groups, clipping at 1) and torch's on the same batch: the
    largest relative difference of the per-step losses."""
    import torch

    from mlx_hf_bridge.engine.optim import AdamW, decay_parameter_names
    from mlx_hf_bridge.engine.step import StepRunner

    ours.train()
    runner = StepRunner(ours, AdamW.for_model(ours, lr, weight_decay=0.01), max_grad_norm=1.0, compile=compile_step)
    features = {"input_ids": to_mx(ids), "attention_mask": to_mx(mask)}
    got = [runner.step([(lambda f, y: ours(**f, labels=y).loss, features, to_mx(labels))], 1.0)[0] for _ in range(steps)]
    decay = set(decay_parameter_names(ours))
    params = list(hf.named_parameters())
    opt = torch.optim.AdamW([{"params": [p for n, p in params if n in decay], "weight_decay": 0.01},
                             {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0}], lr=lr)
    hf.train()
    ref = []
    for _ in range(steps):
        opt.zero_grad()
        loss = hf(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt.step()
        ref.append(loss.item())
    return max(abs(a - b) / abs(b) for a, b in zip(got, ref))

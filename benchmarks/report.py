"""Render benchmarks/results.jsonl (from bench.py --json) as the markdown table in RESULTS.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def workload(cfg: dict, per: str) -> str:
    if per == "encode":
        return f"(c) encode documents, ReasonIR lengths, doc {cfg['document_length']}"
    kind = "(b) fixed full-length" if cfg["fixed"] else "(a) ReasonIR-shaped"
    return f"{kind}, doc {cfg['document_length']}, batch {cfg['batch_size']} / mini {cfg['mini_batch_size']}"


def main(path="benchmarks/results.jsonl") -> int:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    print("| workload | torch samples/s | bridge samples/s | bridge / torch | torch tok/s | bridge tok/s "
          "| tok/s ratio | max rel. loss diff | peak RSS torch / bridge (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, m = r["sides"]["torch"], r["sides"]["mlx"]
        tok = lambda side: f"{side['tokens_per_s']:.0f}" if side.get("tokens_per_s") else "–"  # noqa: E731
        tok_ratio = f"{m['tokens_per_s'] / t['tokens_per_s']:.2f}×" if t.get("tokens_per_s") else "–"
        loss = f"{r['max_rel_loss_diff']:.1e}" if "max_rel_loss_diff" in r else "–"
        print(f"| {workload(r['config'], r['per'])} | {t['samples_per_s']:.3f} | {m['samples_per_s']:.3f} "
              f"| **{r['ratio']:.2f}×** | {tok(t)} | {tok(m)} | {tok_ratio} | {loss} "
              f"| {t['peak_rss_mb']:.0f} / {m['peak_rss_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

#!/usr/bin/env bash
# The runs behind benchmarks/RESULTS.md (ModernBERT-base width, 3 layers: one global + two local).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
out=${1:-benchmarks/results.jsonl}
B="python benchmarks/bench.py"
$B train --layers 3 --document-length 512  --batch-size 16 --mini-batch-size 4 --steps 4 --json "$out"   # (a) 512: 4 steps, the ratio near the target
$B train --layers 3 --document-length 2048 --batch-size 8  --mini-batch-size 4 --steps 2 --json "$out"   # (a) 2048
$B train --layers 3 --document-length 512  --batch-size 8  --mini-batch-size 4 --steps 6 --fixed --json "$out"  # (b): 6 steps, its ratio sits near the 0.8 target
$B encode --layers 3 --document-length 512 --encode-docs 64 --mini-batch-size 16 --steps 2 --json "$out"  # (c)
# the Reason-ModernColBERT recipe's document_length: one mini-batch row at a time keeps torch's 8192² scores in memory
$B train --layers 3 --document-length 8192 --batch-size 4 --mini-batch-size 1 --steps 2 --warmup 0 --json "$out"  # (a) 8192
# the tests CI leaves out for time (marked slow): larger parity parametrizations, multi-process runs
./run slow-tests

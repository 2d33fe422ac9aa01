"""One benchmark row: printed, stamped with the CPU and the time, appended to a jsonl when asked."""

from __future__ import annotations

import json
import platform
import time


def emit(row: dict, path: str | None) -> dict:
    row = {**row, "cpu": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
    print(json.dumps(row, indent=1))
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
    return row

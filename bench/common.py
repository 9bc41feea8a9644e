"""Helpers shared by the end-to-end call benchmarks (bench/calls.py, bench/load.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def server_env(asr: str) -> dict[str, str]:
    """`hotline serve`'s environment for a benchmark: live recogniser, supervised Rasa."""
    return {
        "HOTLINE_ASR": asr,
        "HOTLINE_NLU_MANAGE": "true",
        "HOTLINE_LOG_LEVEL": "WARNING",
        "HOTLINE_MAX_CALLS": "1000",  # capacity is what is measured: no admission limit
    }


def proc_stats(pid: int) -> tuple[float, float]:
    """(cpu seconds, rss MiB) of a process and its children (Rasa included)."""
    cpu = rss = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    tick = os.sysconf("SC_CLK_TCK")
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) / 1024
        except OSError:
            continue
    return cpu, rss


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def reply_latency_events(db: Any, sids: list[str]) -> list[dict[str, Any]]:
    """The server's `reply_latency` events of these calls: detail plus `at` (UTC ISO) and
    `call_sid`, oldest first."""
    if not sids:
        return []
    marks = ",".join("?" * len(sids))
    rows = db.query(
        "SELECT call_sid, at, detail FROM events WHERE kind = 'reply_latency' "
        f"AND call_sid IN ({marks}) ORDER BY id",
        sids,
    )
    return [{**json.loads(r["detail"]), "at": r["at"], "call_sid": r["call_sid"]} for r in rows]

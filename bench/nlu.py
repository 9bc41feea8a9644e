"""NLU benchmark: model load time, parse latency over HTTP, Rasa server memory.

    .venv/bin/python bench/nlu.py [--requests 500] [--url URL --token TOKEN]

Without --url it starts its own Rasa server (RasaServer, the same supervisor `hotline serve`
uses) on a free loopback port with the newest model, so the load time is measured too.
Utterances come from the held-out set (nlu_models/test), cycled. Latency is measured per
request through the hotline's client (HTTP + JSON + entity post-processing) and for Rasa's
own /model/parse alone.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotline.config import load_settings  # noqa: E402
from hotline.nlu.client import SyncNLUClient  # noqa: E402
from hotline.nlu.gen_lookups import plain, read_intents  # noqa: E402
from hotline.nlu.server import RasaServer, _rss_bytes, free_port  # noqa: E402
from hotline.nlu.train import TEST_DIR  # noqa: E402


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def _tree_rss(pid: int) -> int:
    """RSS of a process and its children (Rasa may fork helpers)."""
    total = _rss_bytes(pid) or 0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(_tree_rss(int(c)) for c in children)


def run(url: str, token: str, n: int) -> dict[str, list[float]]:
    texts = [plain(e) for exs in read_intents(sorted(TEST_DIR.glob("*.yml"))).values() for e in exs]
    client_ms: list[float] = []
    raw_ms: list[float] = []
    with SyncNLUClient(url, token, timeout_s=10.0) as client, httpx.Client(trust_env=False) as http:
        for i in range(20):  # warm-up: first TF calls are slow
            client.parse(texts[i % len(texts)])
        for i in range(n):
            text = texts[i % len(texts)]
            t0 = time.perf_counter()
            client.parse(text)
            client_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            r = http.post(f"{url}/model/parse", params={"token": token}, json={"text": text})
            raw_ms.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
    return {"client": client_ms, "raw": raw_ms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--url", help="use a running Rasa server instead of starting one")
    ap.add_argument("--token", default="")
    args = ap.parse_args()

    settings = load_settings()
    rows: list[tuple[str, str]] = []
    server: RasaServer | None = None
    loop = asyncio.new_event_loop()
    if args.url:
        url, token = args.url.rstrip("/"), args.token or settings.nlu_auth_token
    else:
        server = RasaServer.from_settings(
            settings, port=free_port(), log_path=settings.data_dir / "logs" / "rasa-bench.log"
        )
        t0 = time.monotonic()
        loop.run_until_complete(server.start())
        rows.append(("model load (spawn -> ready)", f"{time.monotonic() - t0:.1f} s"))
        rows.append(("model", server.status()["model"]))
        url, token = server.url, server.token
    try:
        if server is not None and server.pid:
            rows.append(("server RSS after load", f"{_tree_rss(server.pid) / 2**20:.0f} MiB"))
        # The supervisor's loop is idle during the sequential requests; that is fine for a bench.
        lat = run(url, token, args.requests)
        for name, values in (("hotline client", lat["client"]), ("raw /model/parse", lat["raw"])):
            rows.append(
                (
                    f"parse latency, {name} (n={len(values)})",
                    f"p50 {statistics.median(values):.1f} ms, p95 {_pct(values, 95):.1f} ms, "
                    f"p99 {_pct(values, 99):.1f} ms, max {max(values):.1f} ms",
                )
            )
        if server is not None and server.pid:
            rows.append(("server RSS after requests", f"{_tree_rss(server.pid) / 2**20:.0f} MiB"))
    finally:
        if server is not None:
            loop.run_until_complete(server.stop())
        loop.close()

    width = max(len(k) for k, _ in rows)
    print(f"{'metric':{width}}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for k, v in rows:
        print(f"{k:{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

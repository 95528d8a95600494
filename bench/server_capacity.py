"""Capacity of one llama-server for a team (docs/deployment.md): items/s at several -np, on this machine.

    .venv/bin/python bench/server_capacity.py [--np 1 4 16] [--threads 2] [--newsletter FILE] [--json OUT]

The same 20 items as bench/newsletter_speed.py (the bench newsletter), rendered by the project's
prompt renderer, sent all at once to `/completion` with the article schema (llama-server's
`json_schema`), greedy, base GGUF + the shipped LoRA. llama-server is built on demand from the
pinned llama.cpp (bench/llama_server_peer.py; a benchmark peer, never a runtime dependency). Prints
the CPU, and for each -np: wall time, items/s, schema-valid answers, and the ratio to -np 1 measured
in the same run. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import llama_server_peer as peer  # noqa: E402
import newsletter_speed as speed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--np", type=int, nargs="+", default=[1, 4, 16], help="llama-server -np values")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--newsletter", type=Path, help="newsletter file (default: the 20-item bench newsletter)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    from inference.analyzer import Item
    from inference.models import default_adapter, embedded_base_model

    machine = speed.cpu()
    print(f"CPU: {machine['model']}, {machine['cores']} cores, flags: {' '.join(machine['flags']) or 'none of note'}")
    print(f"load average at start: {' '.join(map(str, speed.load()))}")
    text = args.newsletter.read_text(encoding="utf-8") if args.newsletter else speed.default_newsletter()
    items = speed.newsletter_items(text)
    tokens, texts = speed.prepared_prompts([*items, Item(**speed.WARM_UP)])
    if not peer.binaries():
        print("building llama-server first: 10-15 minutes on 2 cores")
    server = peer.build()["llama-server"]
    log_dir = Path(tempfile.mkdtemp(prefix="server-capacity-"))
    runs = []
    for n in args.np:
        speed.section(f"llama-server -np {n} -t {args.threads}")
        out = speed.peer_run(server, embedded_base_model(), default_adapter(), n, args.threads, tokens, texts, log_dir)
        out["items_per_s"] = out["items"] / out["newsletter_s"]
        keep = ("n_parallel", "threads", "items", "newsletter_s", "items_per_s", "schema_valid")
        runs.append({k: out[k] for k in keep})
    speed.section("summary")
    print(f"CPU: {machine['model']} ({machine['cores']} cores); load average at end: {speed.load()}")
    first = runs[0]["items_per_s"]
    for run in runs:
        print(
            f"  -np {run['n_parallel']:>2}: {run['items']} items in {run['newsletter_s']:.1f} s = "
            f"{run['items_per_s']:.2f} items/s ({run['items_per_s'] / first:.2f}x -np {runs[0]['n_parallel']}), "
            f"{run['schema_valid']}/{run['items']} schema-valid"
        )
    if args.json:
        args.json.write_text(json.dumps({"cpu": machine, "runs": runs}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Whether a token's logits depend on the shape of the decode calls that computed its prompt.

    .venv/bin/python bench/row_shapes.py [--threads 2]

A 32-token prompt is decoded in sequence 0 of the embedded base + shipped adapter, once in one call of
32 rows (the reference), then split into calls of other sizes, unpadded and padded (with rows of
another sequence) to a multiple of 8, and once with another sequence's cells freed before it (holes
in one shared KV cache, as "merged" batching makes them). Prints the largest logit difference to the
reference for each (0.0: the very same bits). Asserts nothing; the figures are the CPU's: they are
why inference.engine pads "merged" calls to ROW_BLOCK and why "exact" batching keeps one cache per
sequence.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import newsletter_speed as speed  # noqa: E402

from inference.engine import Engine, EngineConfig  # noqa: E402
from inference.models import default_adapter  # noqa: E402

PROMPT = list(range(2000, 2032))
OTHER = list(range(5000, 5040))
PAD_SEQ, OTHER_SEQ = 2, 1
SPLITS = ([28, 4], [24, 8], [16, 16], [4] * 8, [30, 2], [31, 1], [1] * 32, [5, 7, 9, 11], [17, 15])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    machine = speed.cpu()
    print(f"CPU: {machine['model']}, {machine['cores']} cores; {args.threads} threads")
    config = EngineConfig(lora_path=str(default_adapter()), n_threads=args.threads, batching="merged", n_parallel=2)
    engine = Engine(config).load()
    lc, batch = engine._llama_cpp, engine._batch

    def call(rows: list[tuple[int, int, int, bool]]) -> np.ndarray | None:
        for i, (seq, pos, token, logits) in enumerate(rows):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, int(logits)
        batch.n_tokens = len(rows)
        if lc.llama_decode(engine._ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        lc.llama_memory_seq_rm(engine._memory, PAD_SEQ, -1, -1)
        last = [i for i, row in enumerate(rows) if row[3]]
        return (
            np.ctypeslib.as_array(lc.llama_get_logits_ith(engine._ctx, last[0]), shape=(engine.n_vocab,)).copy()
            if last
            else None
        )

    def clear() -> None:
        for seq in range(3):
            lc.llama_memory_seq_rm(engine._memory, seq, -1, -1)

    def split(sizes: list[int], block: int = 1) -> np.ndarray:
        clear()
        pos, out = 0, None
        for n in sizes:
            rows = [(0, pos + i, PROMPT[pos + i], pos + i == len(PROMPT) - 1) for i in range(n)]
            rows += [(PAD_SEQ, j, 2, False) for j in range(-n % block)]
            result = call(rows)
            out = result if result is not None else out
            pos += n
        return out

    reference = split([len(PROMPT)])
    print("prompt split into calls of            unpadded   padded to 8 rows")
    for sizes in SPLITS:
        loose, padded = (float(np.abs(split(sizes, block) - reference).max()) for block in (1, 8))
        print(f"  {str(sizes):<36} {loose:8.4f}   {padded:8.4f}")
    clear()  # another sequence's cells first, freed between the prompt's two calls: the prompt's end
    call([(OTHER_SEQ, i, t, False) for i, t in enumerate(OTHER)])  # lands in cells before its start
    call([(0, i, PROMPT[i], False) for i in range(24)])
    lc.llama_memory_seq_rm(engine._memory, OTHER_SEQ, -1, -1)
    holes = call([(0, 24 + i, PROMPT[24 + i], i == 7) for i in range(8)])
    print(f"  [24, 8], cells out of order (one shared cache): {float(np.abs(holes - reference).max()):.4f}")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

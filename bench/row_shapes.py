"""Whether a token's logits depend on the shape of the decode calls that computed its prompt.

    .venv/bin/python bench/row_shapes.py [--threads 2]

A 32-token prompt is decoded in sequence 0 of the embedded base + shipped adapter, once in one call of
32 rows (the reference), then split into calls of other sizes, unpadded and padded (with rows of
another sequence) to a multiple of 8, and once with another sequence's cells freed before it (holes
in one shared KV cache, as decoding all sequences in one call over `kv_unified` makes them). Prints
the largest logit difference to the reference for each (0.0: the very same bits). Asserts nothing;
the figures are the CPU's: they are why inference.engine keeps one KV cache per sequence and fixed
call shapes (EngineConfig.jump_forward, PROMPT_CHUNK, pad_rows).
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import llama_cpp  # noqa: E402
import newsletter_speed as speed  # noqa: E402

from inference.models import default_adapter, embedded_base_model  # noqa: E402

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
    lc = llama_cpp
    lc.llama_backend_init()
    model = lc.llama_model_load_from_file(str(embedded_base_model()).encode(), lc.llama_model_default_params())
    params = lc.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = 512, 64, 64, 3
    params.kv_unified = True  # one cache for all sequences: a call is one ubatch, cells can go out of order
    params.n_threads = params.n_threads_batch = args.threads
    ctx = lc.llama_init_from_model(model, params)
    lora = lc.llama_adapter_lora_init(model, str(default_adapter()).encode())
    lc.llama_set_adapters_lora(ctx, (lc.llama_adapter_lora_p_ctypes * 1)(lora), 1, (ctypes.c_float * 1)(1.0))
    memory, batch = lc.llama_get_memory(ctx), lc.llama_batch_init(64, 0, 1)
    n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))

    def call(rows: list[tuple[int, int, int, bool]]) -> np.ndarray | None:
        for i, (seq, pos, token, logits) in enumerate(rows):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, int(logits)
        batch.n_tokens = len(rows)
        if lc.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        lc.llama_memory_seq_rm(memory, PAD_SEQ, -1, -1)
        last = [i for i, row in enumerate(rows) if row[3]]
        return np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, last[0]), shape=(n_vocab,)).copy() if last else None

    def clear() -> None:
        for seq in range(3):
            lc.llama_memory_seq_rm(memory, seq, -1, -1)

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
    lc.llama_memory_seq_rm(memory, OTHER_SEQ, -1, -1)
    holes = call([(0, 24 + i, PROMPT[24 + i], i == 7) for i in range(8)])
    print(f"  [24, 8], cells out of order (one shared cache): {float(np.abs(holes - reference).max()):.4f}")
    lc.llama_batch_free(batch)
    lc.llama_free(ctx)
    lc.llama_model_free(model)
    return 0


if __name__ == "__main__":
    sys.exit(main())

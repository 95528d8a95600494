"""The relevance head: a small softmax layer over the base model's text embedding that scores an item.

Why not the adapter's own score: decoded greedily it writes 10 or 1 for almost everything, and even
its score distribution ranks poorly out of fold (docs/relevance.md). Annotators scored "is this
about AI, and is it news rather than an ad"; the base model's mean-pooled embedding of the item's
whole text separates that well, and a linear softmax over it, fitted on training folds only, is
what the cross-validation protocol chose (`news-enhancer eval cv head`).

The head reads the item's full text (title + all of its content, up to `HEAD_CHARS`), not the first
sentence the adapter's prompt shows, and whether the item is sponsored. Its distribution over 1..10
gives the written score (its median: the integer with the least expected absolute error), the
expected value callers sort by, and the confidence. The adapter then writes that score into its
answer (a probe choice), so the answer text and the reported score agree.

The head is data: `models/relevance-head.json` (weights, the feature recipe, the base model it was
fitted on, and the cross-validation figures it was chosen with). Serving, evaluation and fitting all
compute features through `head_text` and `Embedder`, so they cannot drift apart.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data.dataset import file_sha256

log = logging.getLogger(__name__)

SCORES = tuple(range(1, 11))

HEAD_CHARS = 2000
"""Content characters the head reads (the data's longest item has 957; a long-form story's lead is enough)."""

HEAD_FILE = "relevance-head.json"
FORMAT_VERSION = 1


AI_TERMS: tuple[str, ...] = (
    "ai",
    "a\\.i\\.",
    "artificial intelligence",
    "machine learning",
    "deep learning",
    "neural",
    "llms?",
    "gpt[-\\w]*",
    "chatgpt",
    "openai",
    "anthropic",
    "claude",
    "gemini",
    "deepmind",
    "copilot",
    "chatbots?",
    "agents?",
    "agentic",
    "models?",
    "transformers?",
    "inference",
    "training",
    "fine-tun\\w*",
    "diffusion",
    "genai",
    "generative",
    "mistral",
    "llama",
    "hugging ?face",
    "nvidia",
    "gpus?",
    "robots?",
    "robotics",
    "reasoning",
    "prompts?",
    "rag",
    "embeddings?",
    "multimodal",
    "benchmarks?",
    "grok",
    "xai",
    "perplexity",
    "deepseek",
    "qwen",
    "sora",
    "midjourney",
    "autonomous",
    "self-driving",
    "waymo",
    "tpus?",
    "datasets?",
    "ml",
)
"""Words of AI news (regular expressions, matched as whole words, any case). Why a word list beside the
embedding: annotators scored "is this about AI"; of the 57 non-sponsored items they gave 1-2, 52 name
none of these words, against 53 of 288 items given 6-10, and the mean-pooled embedding of a 270M model
alone wrote 6-8 for many such items ("Transparent bamboo", "DNS Nameservers"). The list is general AI
vocabulary written down once, not fitted; cross-validation decides its weight (`keyword_scale`, 0 = off)."""

_AI_TERMS = re.compile(r"\b(?:" + "|".join(AI_TERMS) + r")\b", re.IGNORECASE)


def ai_terms(text: str) -> float:
    """The head's keyword feature: log(1 + how many AI_TERMS words the text has)."""
    return float(np.log1p(len(_AI_TERMS.findall(text))))


@dataclass(frozen=True)
class HeadInput:
    """What the head reads of an item."""

    title: str
    content: str
    is_sponsored: bool = False


def head_text(title: str, content: str) -> str:
    """The one text the base model embeds for an item (fitting, serving and evaluation)."""
    return f"Title: {title.strip()}\nContent: {content.strip()[:HEAD_CHARS]}"


@dataclass
class RelevanceHead:
    """softmax(W @ [(e - mean) / scale, sponsor * sponsor_scale, ai_terms * keyword_scale] + b) over
    `classes` (absent scores get 0)."""

    classes: list[int]
    weights: np.ndarray
    """(len(classes), dim + 2): the last two columns are the sponsored and the keyword feature's."""
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    sponsor_scale: float
    base_model: dict[str, Any]
    """{"name", "sha256", "size"} of the GGUF whose embeddings it was fitted on."""
    fitted: dict[str, Any] = field(default_factory=dict)
    """Provenance: data sha256, items, regularization, and the cross-validation figures."""
    keyword_scale: float = 0.0
    """Multiplies the `ai_terms` feature (not standardized, like the sponsored flag); 0: not used."""

    def features(self, embeddings: np.ndarray, sponsored: np.ndarray, keywords: np.ndarray | None = None):
        """The layer's input; `keywords` (`ai_terms` of each item's head text) may be left out where
        `keyword_scale` is 0."""
        z = (np.asarray(embeddings, dtype=np.float64) - self.mean) / self.scale
        if keywords is None:
            if self.keyword_scale:
                raise ValueError("this head reads the ai_terms feature: pass keywords")
            keywords = np.zeros(len(z))
        sponsor = np.asarray(sponsored, dtype=np.float64) * self.sponsor_scale
        keyword = np.asarray(keywords, dtype=np.float64) * self.keyword_scale
        return np.hstack([z, sponsor.reshape(-1, 1), keyword.reshape(-1, 1)])

    def probabilities(
        self, embeddings: np.ndarray, sponsored: np.ndarray, keywords: np.ndarray | None = None
    ) -> np.ndarray:
        """P(score) for scores 1..10, one row per item."""
        logits = self.features(embeddings, sponsored, keywords) @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        out = np.zeros((len(p), len(SCORES)))
        for j, score in enumerate(self.classes):
            out[:, score - 1] = p[:, j]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "news-enhancer relevance head",
            "version": FORMAT_VERSION,
            "classes": self.classes,
            "sponsor_scale": self.sponsor_scale,
            "keyword_scale": self.keyword_scale,
            "base_model": self.base_model,
            "text": {
                "recipe": "Title: {title}\\nContent: {content}",
                "content_chars": HEAD_CHARS,
                "pooling": "mean",
                "keywords": "ai_terms",
            },
            "fitted": self.fitted,
            "bias": [round(float(v), 7) for v in self.bias],
            "mean": [round(float(v), 7) for v in self.mean],
            "scale": [round(float(v), 7) for v in self.scale],
            "weights": [[round(float(v), 7) for v in row] for row in self.weights],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()) + "\n", encoding="utf-8")


class HeadError(ValueError):
    pass


def load_head(path: str | Path) -> RelevanceHead:
    """Read a head file; a broken or foreign one is a clear error, not a crash later."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        if raw.get("format") != "news-enhancer relevance head" or raw.get("version") != FORMAT_VERSION:
            raise HeadError(f"{path}: not a relevance head file (format/version)")
        weights = np.asarray(raw["weights"], dtype=np.float64)
        head = RelevanceHead(
            classes=[int(c) for c in raw["classes"]],
            weights=weights,
            bias=np.asarray(raw["bias"], dtype=np.float64),
            mean=np.asarray(raw["mean"], dtype=np.float64),
            scale=np.asarray(raw["scale"], dtype=np.float64),
            sponsor_scale=float(raw["sponsor_scale"]),
            base_model=dict(raw["base_model"]),
            fitted=dict(raw.get("fitted") or {}),
            keyword_scale=float(raw.get("keyword_scale") or 0.0),
        )
    except (OSError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, HeadError):
            raise
        raise HeadError(f"{path}: cannot read the relevance head ({type(exc).__name__}: {exc})") from exc
    dim = len(head.mean)
    if weights.ndim == 2 and weights.shape[1] == dim + 1 and not head.keyword_scale:  # a head from before ai_terms
        head.weights = weights = np.hstack([weights, np.zeros((len(weights), 1))])
    if weights.shape != (len(head.classes), dim + 2) or len(head.bias) != len(head.classes) or len(head.scale) != dim:
        raise HeadError(f"{path}: inconsistent shapes (weights {weights.shape}, {dim} features)")
    if not set(head.classes) <= set(SCORES):
        raise HeadError(f"{path}: classes must be scores 1..10, got {head.classes}")
    return head


def default_head_path() -> Path | None:
    """The shipped head in this checkout's `models/`, or None when it is absent."""
    path = Path(__file__).resolve().parent.parent / "models" / HEAD_FILE
    return path if path.is_file() else None


def model_identity(path: str | Path) -> dict[str, Any]:
    """Name, size and sha256 of a GGUF (what a head records and is checked against)."""
    path = Path(path)
    return {"name": path.name, "size": path.stat().st_size, "sha256": file_sha256(path)}


def matches_model(head: RelevanceHead, path: str | Path) -> bool:
    """Whether `path` is the GGUF the head was fitted on (size first: hashing 250 MB costs a second)."""
    path = Path(path)
    if path.stat().st_size != head.base_model.get("size"):
        return False
    return model_identity(path)["sha256"] == head.base_model.get("sha256")


class Embedder:
    """Mean-pooled embeddings of texts from a GGUF with no adapter (inference.embedding: its own small
    llama.cpp context, the output layer skipped).

    One text per decode call: with several sequences in a call, llama.cpp's CPU kernels give a row
    slightly different numbers (see EngineConfig.pad_rows), and a score must not depend on what else
    was in the batch. Thread-safe (a lock); loads on first use.
    """

    def __init__(self, model_path: str | Path, n_threads: int = 2, n_gpu_layers: int = 0, n_ctx: int = 1024):
        self.model_path = str(model_path)
        self.n_threads = n_threads
        self.n_gpu_layers = n_gpu_layers
        self.n_ctx = n_ctx
        self._llm: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._llm is None:
            from inference.embedding import PooledEmbedder

            self._llm = PooledEmbedder(self.model_path, self.n_threads, self.n_gpu_layers, self.n_ctx)
        return self._llm

    def embed(self, texts: list[str]) -> np.ndarray:
        """One row per text. The llama.cpp calls run on a thread of their own that ends with the call.

        Why: after an embed() call made on a long-lived thread (the caller's), the engine's own decoding
        in the same process ran 1.5-1.7x slower for good (measured: 20 items 17 s -> 25-29 s, even
        after the embedding context was closed; bench/embed_interference.py); the same calls on a
        short-lived thread leave it at 17-19 s. The cause is in the threading of the native library
        (its OpenMP runtime keeps per-thread state), not in the embedding itself.
        """
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                llm = self._load()
                result["rows"] = [llm.embed(text) for text in texts]
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                result["error"] = exc

        with self._lock:
            worker = threading.Thread(target=work, name="relevance-embed", daemon=True)
            worker.start()
            worker.join()
        if "error" in result:
            raise result["error"]
        return np.asarray(result["rows"], dtype=np.float64)

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None


@dataclass
class HeadScorer:
    """A head and the embedder of its base model: items in, score distributions out."""

    head: RelevanceHead
    embedder: Embedder

    def probabilities(self, inputs: list[HeadInput]) -> np.ndarray:
        if not inputs:
            return np.zeros((0, len(SCORES)))
        texts = [head_text(i.title, i.content) for i in inputs]
        embeddings = self.embedder.embed(texts)
        sponsored = np.array([i.is_sponsored for i in inputs], dtype=float)
        return self.head.probabilities(embeddings, sponsored, np.array([ai_terms(t) for t in texts]))


def describe(head: RelevanceHead) -> dict[str, Any]:
    """A short summary for logs and manifests."""
    keys = ("C", "sponsor_scale", "keyword_scale", "items")
    return {"classes": head.classes, "base_model": head.base_model, **{k: head.fitted.get(k) for k in keys}}

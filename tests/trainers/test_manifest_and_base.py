"""The manifest round-trips (and keeps keys it doesn't know); base-model specs resolve as documented."""

import hashlib
import json

from inference.manifest import Manifest, code_version
from trainers.base_model import EMBEDDED, resolve_base_model


def test_manifest_round_trip_keeps_unknown_keys(tmp_path):
    manifest = Manifest(kind="adapter", config={"lora_r": 16}, metrics={"final_dev_loss": 0.5})
    path = manifest.write(tmp_path)
    raw = json.loads(path.read_text())
    assert raw["kind"] == "adapter" and raw["code_version"] == code_version() and raw["created"]
    raw["parity"] = {"max_abs_diff": 0.0}  # e.g. written by a later stage
    path.write_text(json.dumps(raw))
    again = Manifest.read(tmp_path)
    assert again.config == {"lora_r": 16} and again.metrics == {"final_dev_loss": 0.5}
    assert again.extra["parity"] == {"max_abs_diff": 0.0}


def test_code_version_names_the_checkout():
    version = code_version()
    assert version and version != "unknown"


def test_local_checkpoint_dirs_and_hub_ids_are_used_as_given(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    info = resolve_base_model(str(tmp_path))
    assert info.path == str(tmp_path.resolve())
    assert info.source_sha256 == hashlib.sha256(b"weights").hexdigest()
    hub = resolve_base_model("meta-llama/Llama-3.2-1B-Instruct")
    assert hub.path == "meta-llama/Llama-3.2-1B-Instruct" and hub.source_sha256 is None


def test_embedded_base_is_cached_with_the_gguf_hash(base_checkpoint_dir):
    info = resolve_base_model(EMBEDDED)
    assert info.path == str(base_checkpoint_dir)
    assert (base_checkpoint_dir / "config.json").is_file() and (base_checkpoint_dir / "tokenizer.json").is_file()
    assert info.source_file.endswith(".gguf") and len(info.source_sha256) == 64

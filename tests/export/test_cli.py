"""`news-enhancer export` end to end on the tiny Gemma: files, manifest, parity verdict, exit codes."""

from __future__ import annotations

import json

from data.dataset import file_sha256
from export import cli, lora_gguf
from export.manifest import manifest_path_for, parity_status
from news_enhancer.cli import main as news_enhancer
from tests.export.conftest import TRAIN_SAMPLE


def _args(setup, out, *extra):
    return [
        "export",
        "--adapter", str(setup.adapter_dir),
        "--base", str(setup.base_gguf),
        "--hf-base", str(setup.hf_dir),
        "--out", str(out),
        "--parity-data", str(TRAIN_SAMPLE),
        "--parity-k", "2",
        "--parity-max-tokens", "12",
        *extra,
    ]  # fmt: skip


def test_lora_export_writes_gguf_and_manifest_with_parity(gemma_setup, tmp_path, capsys):
    out = tmp_path / "news-lora.gguf"
    assert news_enhancer(_args(gemma_setup, out)) == 0
    manifest = json.loads(manifest_path_for(out).read_text())
    assert manifest["kind"] == "gguf"
    assert manifest["config"]["mode"] == "lora"
    assert manifest["config"]["quantization"] == "f32"
    assert manifest["extra"]["sha256"] == file_sha256(out)
    assert manifest["metrics"]["size_bytes"] == out.stat().st_size
    assert manifest["base_model"]["gguf_sha256"] == file_sha256(gemma_setup.base_gguf)
    assert manifest["dataset"]["parity_sha256"] == file_sha256(TRAIN_SAMPLE)
    adapter = manifest["extra"]["adapter"]
    assert adapter["weights_sha256"] == file_sha256(gemma_setup.adapter_dir / "adapter_model.safetensors")
    parity = manifest["metrics"]["parity"]
    assert parity["passed"] is True and parity["prompts"] == 2
    assert parity["variants"][0]["name"] == "lora"
    assert parity_status(manifest).verified  # what `eval gate` asks before publishing
    err = capsys.readouterr().err
    assert "export: LoRA GGUF" in err and "parity: prompt 2/2" in err and "PASS" in err


def test_merged_export_through_the_cli(gemma_setup, tmp_path):
    out = tmp_path / "news-merged.gguf"
    assert news_enhancer(_args(gemma_setup, out, "--merge", "--outtype", "f32")) == 0
    manifest = json.loads(manifest_path_for(out).read_text())
    assert manifest["config"]["mode"] == "merged"
    assert manifest["metrics"]["parity"]["variants"][0]["name"] == "merged"
    assert manifest["metrics"]["parity"]["passed"] is True


def test_broken_export_fails_loudly_and_is_set_aside(gemma_setup, tmp_path, monkeypatch, capsys):
    real_write = lora_gguf.write_gguf_lora

    def write_without_alpha(lora, out_path, dtype="f32"):
        lora.alpha /= 2  # a lost alpha scale, the classic exporter bug
        return real_write(lora, out_path, dtype)

    monkeypatch.setattr(lora_gguf, "write_gguf_lora", write_without_alpha)
    out = tmp_path / "broken.gguf"
    assert news_enhancer(_args(gemma_setup, out)) == 1
    assert not out.exists()
    assert (tmp_path / ("broken.gguf" + cli.FAILED_SUFFIX)).is_file()
    manifest = json.loads(manifest_path_for(out).read_text())
    assert manifest["metrics"]["parity"]["passed"] is False
    assert parity_status(manifest).state == "failed"
    err = capsys.readouterr().err
    assert "parity check FAILED" in err and "do not serve it" in err


def test_bad_input_is_a_clear_error(gemma_setup, tmp_path, capsys):
    assert news_enhancer(["export", "--adapter", str(tmp_path), "--out", str(tmp_path / "x.gguf"),
                          "--base", str(gemma_setup.base_gguf), "--no-parity"]) == 2  # fmt: skip
    assert "not a PEFT adapter directory" in capsys.readouterr().err
    assert news_enhancer(_args(gemma_setup, tmp_path / "x.gguf", "--quant", "q8_0")) == 2
    assert "--quant applies to merged models" in capsys.readouterr().err
    assert news_enhancer(_args(gemma_setup, tmp_path / "x.bin")) == 2
    assert "must end in .gguf" in capsys.readouterr().err


def test_an_export_without_parity_data_is_refused_not_left_unchecked(gemma_setup, tmp_path, capsys):
    # The tiny adapter has no training manifest, so no dev data to fall back on.
    out = tmp_path / "unchecked.gguf"
    argv = ["export", "--adapter", str(gemma_setup.adapter_dir), "--base", str(gemma_setup.base_gguf),
            "--hf-base", str(gemma_setup.hf_dir), "--out", str(out)]  # fmt: skip
    assert news_enhancer(argv) == 2
    assert "no parity data" in capsys.readouterr().err
    assert not out.exists() and not manifest_path_for(out).exists()
    assert news_enhancer([*argv, "--parity-data", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl not found" in capsys.readouterr().err and not out.exists()


def test_no_parity_is_recorded_as_unverified(gemma_setup, tmp_path, capsys):
    out = tmp_path / "unverified.gguf"
    argv = ["export", "--adapter", str(gemma_setup.adapter_dir), "--base", str(gemma_setup.base_gguf),
            "--hf-base", str(gemma_setup.hf_dir), "--out", str(out), "--no-parity"]  # fmt: skip
    assert news_enhancer(argv) == 0 and out.is_file()
    manifest = json.loads(manifest_path_for(out).read_text())
    assert manifest["metrics"]["parity"] == {"checked": False, "reason": "--no-parity"}
    assert manifest["config"]["parity_k"] is None and manifest["dataset"] == {}
    status = parity_status(manifest)
    assert status.state == "unverified" and "not checked (--no-parity)" in status.detail
    assert "`eval gate` refuses this file unless --allow-unverified" in capsys.readouterr().err


def test_tinker_archive_is_converted_and_exported(gemma_setup, tmp_path):
    import shutil
    import tarfile

    # Tinker's layout: PEFT tensor names, a config with little more than r and lora_alpha.
    tinker_dir = tmp_path / "sampler_weights"
    tinker_dir.mkdir()
    shutil.copy(gemma_setup.adapter_dir / "adapter_model.safetensors", tinker_dir)
    (tinker_dir / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
    archive = tmp_path / "checkpoint.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tinker_dir, arcname="sampler_weights")

    out = tmp_path / "tinker-lora.gguf"
    argv = _args(gemma_setup, out)
    argv[argv.index("--adapter") : argv.index("--adapter") + 2] = ["--tinker-archive", str(archive)]
    assert news_enhancer(argv) == 0
    manifest = json.loads(manifest_path_for(out).read_text())
    assert manifest["config"]["tinker_archive"] == str(archive)
    assert manifest["metrics"]["parity"]["passed"] is True

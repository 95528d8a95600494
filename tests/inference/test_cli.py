"""`news-enhancer analyze` and the model options it shares with `serve`, `eval run` and the workflow."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import schemas
from inference import cli as analyze_cli
from inference.models import DEFAULT_ADAPTER_NAME, default_adapter
from inference.options import engine_config
from mcp_server import commands as serve_cli
from tests.conftest import NEWSLETTERS


def _parser(command: str):
    return serve_cli.build_parser() if command == "serve" else analyze_cli.build_parser()


def _config(args):
    return engine_config(args)


ROOT = Path(__file__).parents[2]
ANALYZE = [sys.executable, "-m", "news_enhancer.cli", "analyze"]
FAST = ["--threads", "1", "--max-tokens", "32"]


def run(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ANALYZE, *args], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=900, env=env
    )


def test_flags_default_to_environment_variables_and_win_over_them(monkeypatch):
    monkeypatch.setenv("NEWS_ENHANCER_THREADS", "3")
    monkeypatch.setenv("NEWS_ENHANCER_LORA", "/models/news.gguf")
    monkeypatch.setenv("NEWS_ENHANCER_CTX", "4096")
    config = _config(_parser("serve").parse_args(["--ctx", "1024", "--gpu-layers", "-1"]))
    assert (config.n_threads, config.lora_path, config.n_ctx, config.n_gpu_layers) == (3, "/models/news.gguf", 1024, -1)
    assert config.model_path is None  # the embedded default
    assert config.chat_format == "gemma"  # read from the embedded model: none was named


def test_the_shipped_adapter_goes_on_the_embedded_base_unless_turned_off(monkeypatch):
    monkeypatch.delenv("NEWS_ENHANCER_LORA", raising=False)
    monkeypatch.delenv("NEWS_ENHANCER_MODEL", raising=False)
    monkeypatch.delenv("NEWS_ENHANCER_NO_DEFAULT_LORA", raising=False)
    shipped = ROOT / "models" / DEFAULT_ADAPTER_NAME
    assert default_adapter() == shipped.resolve() and shipped.stat().st_size < 20 * 2**20
    assert _config(_parser("serve").parse_args([])).lora_path == str(shipped.resolve())
    assert _config(_parser("serve").parse_args(["--no-default-lora"])).lora_path is None
    # It was trained for the embedded base, so another model does not get it.
    assert _config(_parser("serve").parse_args(["--model", "other.gguf"])).lora_path is None
    assert _config(_parser("analyze").parse_args(["--lora", "mine.gguf"])).lora_path == "mine.gguf"
    monkeypatch.setenv("NEWS_ENHANCER_NO_DEFAULT_LORA", "1")
    assert _config(_parser("serve").parse_args([])).lora_path is None


def test_a_malformed_environment_variable_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("NEWS_ENHANCER_THREADS", "two")
    with pytest.raises(SystemExit) as exit_info:
        _parser("analyze")
    assert exit_info.value.code == 2
    assert "NEWS_ENHANCER_THREADS='two' is not a valid int" in capsys.readouterr().err


def test_a_missing_model_fails_with_its_path(tmp_path):
    done = run("--model", str(tmp_path / "none.gguf"), "--title", "T", stdin="Some content.")
    assert done.returncode == 1
    assert f"model file not found: {tmp_path / 'none.gguf'}" in done.stderr
    assert done.stdout == ""


def test_empty_input_fails_clearly():
    done = run(stdin="   \n")
    assert done.returncode == 1
    assert "both empty" in done.stderr


@pytest.mark.slow
def test_an_article_from_stdin_takes_its_title_from_the_first_line():
    done = run(*FAST, "--url", "https://example.com/a", stdin="Meta opens Llama 5\nThe weights are out today.\n")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    schemas.validate("article_result", result)
    assert result["title"] == "Meta opens Llama 5" and result["url"] == "https://example.com/a"


@pytest.mark.slow
def test_a_newsletter_file_as_markdown_with_progress_on_stderr():
    done = run(str(NEWSLETTERS / "tldr_ai.html"), "--newsletter", "--format", "markdown", "--max-items", "2", *FAST)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# ")
    assert "analyzed the first 2" in done.stdout
    assert "[1/2]" in done.stderr and "[2/2]" in done.stderr


@pytest.mark.slow
def test_the_default_answer_is_the_shipped_adapters_and_differs_from_the_base():
    article = "Anthropic ships Claude 5\nAnthropic released Claude 5 to all API customers today, with a 1M context.\n"
    default = run(*FAST, stdin=article)
    explicit = run(*FAST, "--lora", str(default_adapter()), stdin=article)
    plain = run(*FAST, "--no-default-lora", stdin=article)
    for done in (default, explicit, plain):
        assert done.returncode == 0, done.stderr
    assert json.loads(default.stdout) == json.loads(explicit.stdout)
    analysis = {key: json.loads(default.stdout)[key] for key in schemas.ANALYSIS_KEYS}
    assert analysis != {key: json.loads(plain.stdout)[key] for key in schemas.ANALYSIS_KEYS}


def test_every_model_option_is_documented_with_its_environment_variable_and_default():
    from inference.options import MODEL_OPTIONS, NO_DEFAULT_LORA

    rows: dict[str, str] = {}  # flag -> its first row in any option table of docs/serving.md
    for line in (ROOT / "docs" / "serving.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `--"):
            rows.setdefault(line.split("|")[1].strip().split()[0].strip("`,"), line)
    for opt in (*MODEL_OPTIONS, NO_DEFAULT_LORA):
        assert opt.flag in rows, f"{opt.flag} is not in docs/serving.md's option table"
        assert opt.env in rows[opt.flag]
        if opt.default not in (None, False):
            default = f"{opt.default:g}" if isinstance(opt.default, float) else str(opt.default)
            assert f"| {default} |" in rows[opt.flag].replace("`", "").replace(".0 |", " |"), (opt.flag, default)

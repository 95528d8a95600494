"""precision = "auto" per machine, with the machine's facts injected (the test runs on any CPU)."""

from __future__ import annotations

import pytest

from trainers import precision as P
from trainers.config import TrainConfig


@pytest.mark.parametrize(
    ("device", "facts", "chosen", "reason"),
    [
        ("cpu", {"cpu_bf16": "amx"}, "bf16", "cpu with AMX"),
        ("cpu", {"cpu_bf16": "avx512_bf16"}, "fp32", "cpu with avx512_bf16 but no AMX: fp32"),
        ("cpu", {"cpu_bf16": "none"}, "fp32", "cpu without native bf16: fp32"),
        ("cuda", {"cuda_bf16": True}, "bf16", "cuda with bf16"),
        ("cuda", {"cuda_bf16": False}, "fp16", "cuda without bf16"),
        ("mps", {}, "fp32", "mps: fp32"),
    ],
)
def test_auto_picks_per_machine(device, facts, chosen, reason):
    choice = P.choose_precision("auto", device, **facts)
    assert choice.chosen == chosen
    assert choice.reason.startswith(reason)
    assert choice.warning is None


@pytest.mark.parametrize(("kind", "words"), [("none", "far slower"), ("avx512_bf16", "2x slower")])
def test_explicit_bf16_on_a_cpu_where_it_is_slow_is_kept_but_warns(kind, words):
    choice = P.choose_precision("bf16", "cpu", cpu_bf16=kind)
    assert choice.chosen == "bf16"
    assert words in choice.warning
    assert P.choose_precision("bf16", "cpu", cpu_bf16="amx").warning is None


@pytest.mark.parametrize("requested", ["fp32", "fp16"])
def test_explicit_choices_are_kept(requested):
    for kind in P.CPU_BF16_KINDS:
        assert P.choose_precision(requested, "cpu", cpu_bf16=kind).chosen == requested
    assert P.choose_precision(requested, "cuda", cuda_bf16=True).chosen == requested


def test_unknown_precision_is_an_error():
    with pytest.raises(ValueError, match="unknown precision 'bf32'"):
        P.choose_precision("bf32", "cpu", cpu_bf16="amx")


def test_torch_probe_wins_and_cpuinfo_is_only_the_fallback(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert P.cpu_bf16_kind(lambda: "none", info) == "none"
    assert P.cpu_bf16_kind(lambda: None, info) == "amx"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert P.cpu_bf16_kind(lambda: None, info) == "avx512_bf16"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2\n")
    assert P.cpu_bf16_kind(lambda: "amx", info) == "amx"
    assert P.cpu_bf16_kind(lambda: None, info) == "none"
    assert P.cpu_bf16_kind(lambda: None, tmp_path / "missing") == "none"


def test_this_machine_gets_a_known_kind_from_torch():
    assert P._torch_cpu_bf16() in P.CPU_BF16_KINDS


def test_the_config_default_is_auto():
    assert TrainConfig().precision == "auto"

"""Which float type training computes in, and why: `precision = "auto"` must never pick a slow one.

bf16 autocast pays only where the CPU multiplies bf16 matrices in hardware, and is a disaster where it
does not. Measured with torch 2.13 on the shipped config (docs/measured-facts.md, "bf16 vs fp32 on CPUs"):
- AMD EPYC with AVX2 only: a bf16 matmul ran 84x slower than fp32; training did not finish 4 steps
  in 7 minutes in bf16 (10.8 s/step in fp32).
- AMD EPYC Zen 4 with avx512_bf16 but no AMX: a bf16 matmul alone was ~2x faster, yet a whole bf16
  autocast training step took 17.5 s against 8.9 s in fp32 (2x slower).
- Intel Xeon with AMX: bf16 autocast was part of a 7.5 -> 5.8 s/step gain.
So "auto" takes bf16 on a CPU only when it has AMX tiles, as torch itself reports them (falling back to
the kernel flags in /proc/cpuinfo only where torch cannot say), and fp32 everywhere else.

The choice is plain data (`PrecisionChoice`), decided by `choose_precision` from injected facts, so
every case (AMX, avx512_bf16 only, no bf16, CUDA with and without bf16) is tested on any machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("auto", "bf16", "fp16", "fp32")

CPU_BF16_KINDS = ("amx", "avx512_bf16", "none")
"""What a CPU has for bf16: AMX tiles (fast bf16 matmuls), avx512_bf16 instructions only, or nothing."""

CPUINFO_FLAGS = (("amx_bf16", "amx"), ("avx512_bf16", "avx512_bf16"))
"""/proc/cpuinfo flag -> kind, strongest first (the fallback when torch cannot tell)."""

AUTO_CPU = {
    "amx": ("bf16", "cpu with AMX (bf16 matrix tiles): bf16 autocast"),
    "avx512_bf16": ("fp32", "cpu with avx512_bf16 but no AMX: fp32 (a bf16 step measured 2x slower there)"),
    "none": ("fp32", "cpu without native bf16: fp32"),
}
"""CPU kind -> what "auto" computes in, and the reason logged and recorded in the manifest."""

BF16_ON_CPU_WARNINGS = {
    "avx512_bf16": "this CPU has avx512_bf16 but no AMX: a bf16 training step measured 2x slower than fp32; "
    'precision = "auto" picks fp32 here',
    "none": "this CPU has no native bf16 (no avx512_bf16/AMX): bf16 training will be far slower than fp32 "
    '(84x per matmul measured on an AVX2 CPU); precision = "auto" picks fp32 here',
}


@dataclass(frozen=True)
class PrecisionChoice:
    requested: str
    """What the config asked for (auto, bf16, fp16, fp32)."""
    chosen: str
    """What training computes in: bf16, fp16 or fp32 (fp32: no autocast)."""
    reason: str
    """One line for the log and the manifest, e.g. "cpu without native bf16: fp32"."""
    warning: str | None = None
    """Set when an explicit choice will be far slower than fp32 on this machine."""

    def as_dict(self) -> dict[str, str | None]:
        return {"requested": self.requested, "chosen": self.chosen, "reason": self.reason, "warning": self.warning}


def _torch_cpu_bf16() -> str | None:
    """torch's own answer (its cpuinfo), or None when this torch has no probe."""
    try:
        import torch.cpu as tcpu
    except ImportError:
        return None
    amx, avx512 = (getattr(tcpu, n, None) for n in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    if not callable(amx) and not callable(avx512):
        return None
    if callable(amx) and amx():
        return "amx"
    return "avx512_bf16" if callable(avx512) and avx512() else "none"


def _cpuinfo_bf16(path: str | Path) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "none"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return next((kind for flag, kind in CPUINFO_FLAGS if flag in flags), "none")


def cpu_bf16_kind(
    torch_probe: Callable[[], str | None] = _torch_cpu_bf16, cpuinfo: str | Path = "/proc/cpuinfo"
) -> str:
    """The CPU's bf16 kind ("amx", "avx512_bf16" or "none"): torch's answer, else cpuinfo's."""
    answer = torch_probe()
    return _cpuinfo_bf16(cpuinfo) if answer is None else answer


def choose_precision(
    requested: str,
    device_type: str,
    *,
    cpu_bf16: str | None = None,
    cuda_bf16: bool | None = None,
) -> PrecisionChoice:
    """The compute type for `requested` on a `device_type` ("cpu", "cuda", "mps") device.

    `cpu_bf16` (a CPU_BF16_KINDS value) / `cuda_bf16` are the machine's facts; None asks this machine.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; known: {', '.join(PRECISIONS)}")
    if device_type == "cpu":
        kind = cpu_bf16_kind() if cpu_bf16 is None else cpu_bf16
        if requested == "auto":
            chosen, reason = AUTO_CPU[kind]
            return PrecisionChoice(requested, chosen, reason)
        warning = BF16_ON_CPU_WARNINGS.get(kind) if requested == "bf16" else None
        return PrecisionChoice(requested, requested, f"{requested} as configured", warning)
    if device_type == "cuda":
        if requested != "auto":
            return PrecisionChoice(requested, requested, f"{requested} as configured")
        if cuda_bf16 is None:
            import torch

            cuda_bf16 = bool(torch.cuda.is_bf16_supported())
        if cuda_bf16:
            return PrecisionChoice(requested, "bf16", "cuda with bf16: bf16 autocast")
        return PrecisionChoice(requested, "fp16", "cuda without bf16: fp16 autocast (with loss scaling)")
    if requested == "auto":
        return PrecisionChoice(requested, "fp32", f"{device_type}: fp32")
    return PrecisionChoice(requested, requested, f"{requested} as configured")

"""What the CPU can do: model name, vector ISA and native bf16, as the inference choices need them.

The fast path may only pick bf16 where the CPU computes it natively (AVX512-BF16 or AMX): on an
AVX2 CPU (e.g. AMD Zen 3) oneDNN emulates bf16 and a Swin-T step is 11x slower than fp32. The
flags come from torch's cpuinfo queries, capped by the environment variables that cap the kernels
torch actually runs (``ATEN_CPU_CAPABILITY`` for ATen, ``ONEDNN_MAX_CPU_ISA`` for oneDNN), so a
capped run (e.g. an AVX2 emulation of an older CPU) is described as what it runs.
"""
from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

import torch

# oneDNN's ISA names in increasing order (ONEDNN_MAX_CPU_ISA); bf16 arithmetic starts at AVX512_CORE_BF16
_ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
                "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "ALL", "DEFAULT")


@dataclass(frozen=True)
class CpuInfo:
    """One CPU as the inference code sees it.

    Attributes:
        model: the model name (``/proc/cpuinfo``), e.g. "AMD EPYC 7B13".
        capability: the ATen kernel level in use ("AVX512", "AVX2", "DEFAULT").
        avx2, avx512, avx512_bf16, amx: ISA extensions usable by the kernels (after the env caps).
        cores: logical CPUs visible to this process.
    """

    model: str
    capability: str
    avx2: bool
    avx512: bool
    avx512_bf16: bool
    amx: bool
    cores: int

    @property
    def native_bf16(self) -> bool:
        """bf16 matmuls/convolutions run natively (else oneDNN emulates them, slower than fp32)."""
        return self.avx512_bf16 or self.amx

    @property
    def isa(self) -> str:
        """Short ISA summary for tables, e.g. "AVX-512 + AVX512-BF16" or "AVX2"."""
        parts = ["AVX-512" if self.avx512 else "AVX2" if self.avx2 else "no AVX2"]
        parts += [name for name, on in (("AVX512-BF16", self.avx512_bf16), ("AMX", self.amx)) if on]
        return " + ".join(parts)

    def describe(self) -> str:
        """One line for logs and benchmark headers."""
        return f"{self.model} ({self.isa}; ATen {self.capability}; {self.cores} logical CPUs)"


def _model_name() -> str:
    """``model name`` of /proc/cpuinfo, with family/model numbers when a hypervisor hides the model
    (e.g. "AMD EPYC (family 25, model 17)": Zen 4)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if not any(ch.isdigit() for ch in name) and "cpu family" in fields:
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return name


def _onednn_cap() -> int | None:
    """Position of ONEDNN_MAX_CPU_ISA in _ONEDNN_ISAS, None when unset or unknown."""
    value = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).upper()
    return _ONEDNN_ISAS.index(value) if value in _ONEDNN_ISAS and value not in ("ALL", "DEFAULT") else None


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """The CPU of this process (cached: the environment caps are read once)."""
    cpu = torch.cpu
    capability = torch.backends.cpu.get_cpu_capability()
    cap = _onednn_cap()

    def allowed(isa: str) -> bool:
        return cap is None or cap >= _ONEDNN_ISAS.index(isa)

    aten_512 = capability.startswith("AVX512")
    avx512 = bool(cpu._is_avx512_supported()) and aten_512 and allowed("AVX512_CORE")
    return CpuInfo(
        model=_model_name(),
        capability=capability,
        avx2=bool(cpu._is_avx2_supported()) and capability != "DEFAULT" and allowed("AVX2"),
        avx512=avx512,
        avx512_bf16=bool(cpu._is_avx512_bf16_supported()) and avx512 and allowed("AVX512_CORE_BF16"),
        amx=bool(cpu._is_amx_tile_supported()) and allowed("AVX512_CORE_AMX"),
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
    )


__all__ = ["CpuInfo", "cpu_info"]

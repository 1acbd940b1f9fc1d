"""What machine a benchmark ran on, printed beside its numbers."""

from __future__ import annotations

import os
import platform


def cpu_fields() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo ("model name", "cpu family", "model", "flags"...)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


# AMD's core generations by (family, model range), as /proc/cpuinfo numbers them. "AMD EPYC" alone names
# several, and they differ where it matters here: a Zen 4 core runs AVX-512 on 256-bit halves (the
# same matrix-product rate as AVX2), a Zen 5 core (family 26) has full 512-bit units (docs/cpu.md).
_AMD_CORES = [(25, range(0x00, 0x10), "Zen 3"), (25, range(0x10, 0x20), "Zen 4"), (25, range(0x20, 0x60), "Zen 3"),
              (25, range(0x60, 0x80), "Zen 4"), (25, range(0xA0, 0xB0), "Zen 4"), (26, range(0, 256), "Zen 5")]


def cpu_model() -> str:
    """The processor's name, with its family and model numbers (and core generation, where known)."""
    fields = cpu_fields()
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" not in fields:
        return name
    family, model = int(fields["cpu family"]), int(fields.get("model", "0"))
    core = next((core for fam, models, core in _AMD_CORES
                 if "AMD" in fields.get("vendor_id", "") and fam == family and model in models), None)
    flags = fields.get("flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "no AVX-512"
    # Virtual machines may report one model for different hosts: two "model 167" Xeons trained cifar-cpu at 2,219
    # and 3,316 images/s over the same first steps (2026-12-07). AMX (Sapphire Rapids and later) is one more mark
    # of the host; whether the slower one had it was not recorded.
    if "amx_tile" in flags:
        isa += ", AMX"
    return f"{name} (family {family}, model {model}{': ' + core if core else ''}; {isa})"


# /proc/stat's first line: the CPU time of all cores so far, in clock ticks, in this order (Linux 2.6.11 and
# later; "guest" time, after these, is already counted in "user")
_CPU_TIMES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_times() -> dict[str, int] | None:
    """The CPU time of all cores since boot, by kind (``_CPU_TIMES``), in clock ticks; None where there is
    no /proc/stat (not Linux)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    return {kind: int(value) for kind, value in zip(_CPU_TIMES, fields[1:])}


def stolen_share(before: dict[str, int] | None, after: dict[str, int] | None) -> float | None:
    """The share of the CPU time between two ``cpu_times()`` readings that the hypervisor gave to other
    virtual machines while this one's cores had work ("steal"): a benchmark on a virtual machine ran that
    much slower than its cores could, and the pace of one processor model differs from host to host
    (benchmarks/results/cpu-recipe-sweep.md, round 14). None without both readings."""
    if before is None or after is None:
        return None
    spent = {kind: after.get(kind, 0) - before.get(kind, 0) for kind in _CPU_TIMES}
    total = sum(spent.values())
    return spent["steal"] / total if total > 0 else None


def describe_steal(share: float | None) -> str:
    """A line for a benchmark's output: how much of its CPU time the hypervisor took."""
    if share is None:
        return "CPU time stolen by the hypervisor: not measured"
    return f"CPU time stolen by the hypervisor: {100 * share:.1f}% (steal in /proc/stat; 0% on a machine of one's own)"


def describe(threads: int | None = None) -> str:
    import numpy

    lines = [
        f"machine: {cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}",
        f"python {platform.python_version()}, numpy {numpy.__version__}",
    ]
    try:
        import torch

        lines.append(f"torch {torch.__version__}")
    except ImportError:
        pass
    try:
        import transformers

        lines[-1] += f", transformers {transformers.__version__}"
    except ImportError:
        pass
    if threads is not None:
        lines.append(f"threads: {threads} (BLAS and torch)")
    return "\n".join(lines)

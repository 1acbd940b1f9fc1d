"""What machine a benchmark ran on, printed beside its numbers."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


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

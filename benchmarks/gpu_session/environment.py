"""Stage environment: versions, the device, nvidia-smi."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess

import numpy as np


def stage_environment(args) -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "numpy": np.__version__}
    for module in ("cupy", "torch", "numba", "scipy", "transformers"):
        try:
            info[module] = __import__(module).__version__
        except Exception as error:  # noqa: BLE001 (a missing or broken library is what this stage reports)
            info[module] = f"not available ({type(error).__name__})"
    if args.device_backend == "cupy":
        import cupy

        runtime = cupy.cuda.runtime
        properties = runtime.getDeviceProperties(0)
        info.update(device=properties["name"].decode(),
                    compute_capability=f"{properties['major']}.{properties['minor']}",
                    memory_gib=round(properties["totalGlobalMem"] / 2**30, 1),
                    driver=runtime.driverGetVersion(), cuda_runtime=runtime.runtimeGetVersion())
    else:
        info["device"] = "simulated GPU (cupy-sim) on " + platform.processor()
    smi = shutil.which("nvidia-smi")
    info["nvidia_smi"] = subprocess.run([smi], capture_output=True, text=True).stdout if smi else "not found"
    (args.out / "environment.txt").write_text(json.dumps({k: v for k, v in info.items() if k != "nvidia_smi"},
                                                         indent=2) + "\n\n" + info["nvidia_smi"])
    return info

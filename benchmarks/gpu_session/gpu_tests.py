"""Stage tests: the tests marked gpu (the CuPy halves of the suite: every CUDA kernel against its
reference, the whole model against the CPU) on real CuPy; in a rehearsal they skip."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from gpu_session.common import ROOT, remaining


def stage_tests(args) -> dict:
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "--maxfail=25",
               f"--junitxml={args.out / 'gpu-tests.xml'}", "tests"]
    if not args.rehearse and importlib.util.find_spec("xdist") is not None:
        # Most of the first run's time is NVRTC compiling kernels on the CPU: eight workers share the
        # GPU (each with its own memory pool; the H200 has room) and the 16 cores compile in parallel.
        command += ["-n", "8"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env,
                         timeout=max(30, min(args.tests_timeout, remaining(args) - 60)))
    (args.out / "gpu-tests.txt").write_text(run.stdout + run.stderr)
    last = (run.stdout.strip().splitlines() or ["(no output)"])[-1]
    return {"returncode": run.returncode, "summary": last, "passed": run.returncode == 0}

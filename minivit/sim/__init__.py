"""A simulated GPU: a strict stand-in for the parts of CuPy that minivit uses, on the CPU.

``minivit.backend.use("cupy-sim")`` (or ``MINIVIT_BACKEND=cupy-sim``) makes this package the
array namespace. One module per concern:

    arrays.py     the arrays and the namespace: CuPy's rules (no implicit host conversion, no
                  mixing with NumPy arrays, only what CuPy implements), NumPy's arithmetic
    counting.py   what a GPU would pay for: launches, host synchronisations, copies across
                  the bus, by phase (``counters()``, ``phase(name)``, ``kernel_launch(name)``)
    launches.py   what each launch is (``Launch``): shapes, the grid and block CuPy, cuBLAS or
                  minivit's own kernel would use, bytes, FLOPs, serial iterations per thread
    cost.py       a cost model: a named GPU's bandwidth, FLOP rates, SM count, memory latency
                  and launch floor turn the records into predicted milliseconds

Counted (``counters()``, also ``minivit.backend.sim_counters()``):

    launches    kernel launches: each elementwise operation, reduction, copy, gather or
                scatter, random draw, matrix product (and the copy CuPy makes of an operand
                whose last two axes are not contiguous), and each CUDA kernel of
                minivit/kernels/gpu/, which runs here as its reference but counts as the
                one launch it makes on a GPU (``kernel_launch``)
    syncs       host synchronisations: .item(), float(), int(), bool(), .get(), .tolist(),
                repr(), boolean-mask indexing; ``sync_sites`` says where each came from
    to_device, to_host          copies across the bus (and their bytes)
    by_phase    launches per phase, for code run inside ``phase(name)``
    by_kind     launches per kind of operation

and ``records()`` holds one ``Launch`` per launch, for ``cost.predict``. The counts follow
CuPy's behaviour as documented, not a measurement of it; the cost model's constants are
fitted to what a GPU measured (``benchmarks/gpu_cost_model.py``).
"""

from minivit.sim import arrays as _arrays
from minivit.sim import counting as counting
from minivit.sim.counting import counters as counters
from minivit.sim.counting import kernel_launch as kernel_launch
from minivit.sim.counting import phase as phase
from minivit.sim.counting import records as records
from minivit.sim.counting import reset_counters as reset_counters

_MODULE_ONLY = {"annotations", "math", "sys", "numpy", "launches"}  # arrays.py's own imports
globals().update({name: value for name, value in vars(_arrays).items()
                  if not name.startswith("_") and name not in _MODULE_ONLY})

# The package's own controls and modules, beside the CuPy namespace.
CONTROLS = ("counters", "reset_counters", "records", "phase", "kernel_launch", "special", "CONTROLS",
            "arrays", "counting", "launches", "cost", "workload")

"""Fast GPU implementations of reference operations (CuPy arrays): one module per kernel, beside its CUDA.

Each module holds the fast functions for one operation, each declaring the reference it
replaces (``@replaces("gelu_forward")``, ``minivit.kernels.registry``), the ``CudaKernel``
objects they launch, and each kernel's *stand-in* (what the simulated GPU runs in its place);
the CUDA C is the ``.cu`` file of the same name. On a GPU most of the reference's time at
small batch sizes goes into launching kernels (every NumPy-style operator is one, about
5-10 microseconds of CPU time each), so these do the same work in as few launches as possible:

    module            operation                          reference launches   here
    gelu              GELU forward / backward            ~5 / ~10              1 / 1
    layernorm         LayerNorm forward / backward       ~8 / ~12              1 / 2  (dx and partial sums, then
                                                                                  column_sums.cu's finishing pass)
    softmax           softmax forward / backward         ~5 / ~4               1 / 1
    attention         attention over all heads, fwd/bwd  ~8 / ~12              1 / 1  (fused: q, k, v and the
                                                                                  probabilities in shared memory;
                                                                                  5 / 7 where they do not fit)
    linear            the linear layer's backward        3 (+1 without dx)     4: two cuBLAS products and the
                                                                                  bias gradient in two passes
    column_sums       sums over rows (bias gradients)    1 (6-24 blocks)       2 (hundreds of blocks)
    cross_entropy     cross-entropy forward / backward   ~12 / ~3              1 / 1
    optimizer         AdamW / SGD over the flat buffer   ~11 / ~6              1 / 1
                      gradient clipping (flat buffer)    ~7                    3
                      float16 gradients unscaled, scale  ~6 / ~8               1 / 1
    augment           crop + flip + normalise            ~12                   1
    randaugment       RandAugment, one round             ~300                  ~6
    dropout           dropout forward                    5                     2
    counter_random    a per-sample uniform draw          ~25                   1
    launch            what they share: CudaKernel, grids, dtype builds (and common.cuh, the CUDA helpers)

The sources are compiled on first use by NVRTC through CuPy's RawModule; the tests compile
all of them without a GPU (``minivit.kernels.nvrtc``). Where a case is not covered (a dtype,
an axis, dropout), the function hands it to the reference. The linear layer's forward needs no kernel
of its own (the reference's product is a cuBLAS call, plus one launch for the bias); its backward
replaces the reference's bias gradient, CuPy's ``sum(axis=0)``, which gives a GPU a handful of blocks.

Importing this package imports every module in it, which registers its kernels: a new
kernel is a new module here (and its ``.cu``), nothing else.
"""

import importlib
import pkgutil

MODULES = [importlib.import_module(f"{__name__}.{module.name}") for module in pkgutil.iter_modules(__path__)]

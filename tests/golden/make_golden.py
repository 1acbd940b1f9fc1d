"""Regenerate the golden parity files from PyTorch: python tests/golden/make_golden.py

Needs torch and transformers (requirements-dev.txt). Each file holds, for one
config of tests/hf_reference.py, transformers' weights, the input, the upstream
gradient, and the logits and every gradient that transformers computed (float64).
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from hf_reference import PARITY_CONFIGS, flatten, reference_run  # noqa: E402

if __name__ == "__main__":
    import torch
    import transformers

    for name, fields in PARITY_CONFIGS.items():
        run = reference_run(fields)
        path = HERE / f"parity-{name}.npz"
        np.savez_compressed(path, **flatten(run))
        print(f"wrote {path.name} ({len(run['weights'])} tensors) "
              f"with torch {torch.__version__}, transformers {transformers.__version__}")

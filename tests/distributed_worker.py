"""One rank of a distributed training run, for tests/test_distributed.py (started by mpiexec).

    mpiexec -n 2 python tests/distributed_worker.py CONFIG_JSON REPORT_DIR [--resume]

Trains through the Python API, ``Trainer(TrainConfig(..., distributed=True)).run()``, then
writes what this rank holds, so the test can compare the ranks with one another and with
one process: REPORT_DIR/rank<r>.npz (its weights) and rank<r>.json (its summary, thread
count and description).
"""

import json
import sys
from pathlib import Path

import numpy as np

from minivit.augment import AugmentConfig
from minivit.training.options import TrainConfig
from minivit.training.trainer import Trainer


def main() -> None:
    values = json.loads(sys.argv[1])
    report_dir = Path(sys.argv[2])
    values["augment"] = AugmentConfig(**values.get("augment", {}))
    trainer = Trainer(TrainConfig(**values, distributed=True), resume="--resume" in sys.argv[3:])
    summary = trainer.run()
    rank = trainer.comm.rank
    np.savez(report_dir / f"rank{rank}.npz", **trainer.model.state_dict())
    report = {"summary": summary, "rank": rank, "size": trainer.comm.size, "threads": trainer.comm.threads,
              "description": trainer.comm.description}
    (report_dir / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()

"""The GPU session's tools, one module per concern; ``benchmarks/gpu_check.py`` runs them in order.

    runner.py       the stages in order, the deadline, results.json and summary.md (``main``)
    common.py       the clock, the rehearsal's toy model, a model with its optimizer and a fixed batch
    environment.py  versions, the device, nvidia-smi
    gpu_tests.py    the GPU half of the test suite on real CuPy (every kernel against its reference)
    parity.py       CPU against GPU: every gradient by name, AdamW steps
    graphs.py       can forward + backward be captured as a CUDA graph
    throughput.py   minivit (TrainStep) beside PyTorch eager and torch.compile, images/s and memory
    torch_side.py   the PyTorch side of a throughput row (transformers' ViT), run in its own process
    step_profile.py where a training step's time goes: per phase, then per dispatched operation
    suspects.py     microbenchmarks of the operations the cost model suspects, each beside its prediction,
                    and the cost model's constants refitted to them
    predictions.py  the simulator's cost model for a whole step (records made on "cupy-sim")
    training.py     CIFAR-10 with the GPU recipe under a time budget
    summary.py      summary.md from the stages' results
"""

"""Stage graphs: can zero_grad + forward + loss + backward be captured as a CUDA graph (CuPy's stream
capture with its memory pool), is the replay right, and what does it buy. (The first H200 session:
no; CuPy refuses cuBLAS calls during capture.)"""

from __future__ import annotations

import json
import time

from gpu_session.common import training_pieces
from minivit import backend


def stage_graphs(args) -> dict:
    """Capture zero_grad + forward + loss + backward as a CUDA graph (CuPy's stream capture) and replay it.

    What a captured step cannot do: kernel arguments are captured by value, so the learning rate
    and AdamW's bias corrections (host numbers each step) would be frozen in the graph; the
    optimizer step is left outside the graph here.
    """
    from minivit import dispatch

    if args.rehearse:
        return {"skipped": "CUDA graphs need a GPU (stream capture); nothing to rehearse on the simulation"}
    import cupy

    import minivit

    backend.use("cupy")
    model, _, images, labels = training_pieces(minivit.preset("cifar-tiny"), 128)

    def forward_backward():
        model.zero_grad()
        loss, cache = dispatch.cross_entropy_forward(model.forward(images), labels, 0.1)
        model.backward(dispatch.cross_entropy_backward(1.0, cache))
        return loss

    stream = cupy.cuda.Stream(non_blocking=True)
    result = {}
    with stream:
        for _ in range(3):  # the memory pool learns the step's sizes before capture
            forward_backward()
        stream.synchronize()
        eager_grad = model.flat.grad.copy()
        try:
            stream.begin_capture()
            forward_backward()
            graph = stream.end_capture()
        except Exception as error:  # noqa: BLE001 (the finding is whether it works)
            try:
                stream.end_capture()
            except Exception:  # noqa: BLE001
                pass
            return {"captured": False, "error": f"{type(error).__name__}: {error}"}
        graph.launch(stream)
        stream.synchronize()
        result["captured"] = True
        result["replay_equals_eager"] = bool(cupy.allclose(model.flat.grad, eager_grad, rtol=1e-5, atol=1e-6))

        def timed(function, repeats=20):
            function()
            stream.synchronize()
            start = time.perf_counter()
            for _ in range(repeats):
                function()
            stream.synchronize()
            return (time.perf_counter() - start) / repeats

        result["eager_ms"] = 1000 * timed(forward_backward)
        result["graph_ms"] = 1000 * timed(lambda: graph.launch(stream))
        result["speedup"] = result["eager_ms"] / result["graph_ms"]
    backend.use("numpy")
    (args.out / "graphs.json").write_text(json.dumps(result, indent=2))
    return result

"""float16 mixed precision: the model computes in float16, the optimizer keeps float32 weights.

    --precision float16   (GPU backends only)

On a GPU, float16 halves the bytes every kernel moves and lets the matrix products use tensor
cores. What it costs, and how minivit pays it (as torch.amp does):

  * float16 holds magnitudes from about 6e-8 to 65504: small gradients underflow to zero.
    ``LossScaler`` multiplies the gradient of the loss by a large scale (2^16 to start)
    before the backward pass and divides the float16 gradients by it afterwards, into
    float32 (``unscale``). A gradient that overflowed (inf or NaN) skips the step and halves
    the scale; 2000 clean steps in a row double it (``update``). All of it happens on the
    device: the scale, the overflow flag and the skip never make the CPU wait for the GPU.
  * float16 weights cannot take an update much smaller than 1/1000 of their size: the
    optimizer steps float32 master weights and copies them into the float16 model
    (``Optimizer(master_weights=True)``); checkpoints hold the float32 weights.
  * The loss and its gradient are computed in float32 (the logits are cast).

Why float16 and not bfloat16 (the format with float32's range, which needs no loss scaling):
CuPy 14 computes in bfloat16 only where ml_dtypes is installed (it registers its ufunc loops
then), and not in its batched products; NumPy (the CPU and the simulated GPU, where the tests
run) needs ml_dtypes as well, and each of minivit's CUDA kernels would need a bfloat16 build
(cuda/common.cuh loads and stores float16 by its bits). What it would buy is small: bfloat16
moves the same bytes and runs the tensor cores at the same rate as float16, so the simulator's
cost model (minivit.sim.cost) predicts the same step; the loss scaler it saves costs three small
launches a step. So float16 it is, stored in float16 and accumulated in float32 (every kernel
loads into float32; cuBLAS accumulates half products in float32), with float32 master weights.
"""

from __future__ import annotations

from minivit import backend, dispatch

PRECISIONS = ("float32", "float16", "float64")  # float64: exact comparisons on the CPU (the distributed tests)


class LossScaler:
    """Dynamic loss scaling (torch.amp.GradScaler's rule), kept on the device."""

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000):
        xp = backend.xp
        self.scale = xp.full(1, init_scale, dtype=xp.float32)
        self.growth_tracker = xp.zeros(1, dtype=xp.int32)  # clean steps in a row
        self.found_inf = xp.zeros(1, dtype=xp.float32)  # 1 when this step's gradient overflowed
        self.growth_factor, self.backoff_factor, self.growth_interval = growth_factor, backoff_factor, growth_interval

    def scale_loss_gradient(self, dlogits, dtype: str):
        """The float32 gradient of the loss, times the scale, in the model's dtype (float16)."""
        return (dlogits * self.scale).astype(dtype)

    def unscale(self, grad, out) -> None:
        """out (float32) = grad (float16, scaled) / scale; records an overflow in found_inf."""
        dispatch.unscale_gradients(grad, self.scale, out, self.found_inf)

    def update(self) -> None:
        """After the step: back off on an overflow, grow after growth_interval clean steps."""
        dispatch.update_loss_scale(self.scale, self.growth_tracker, self.found_inf, self.growth_factor,
                                   self.backoff_factor, self.growth_interval)

    def state_dict(self) -> dict:
        return {"scale": float(backend.to_numpy(self.scale)[0]),
                "growth_tracker": int(backend.to_numpy(self.growth_tracker)[0])}

    def load_state_dict(self, state: dict) -> None:
        self.scale[...] = state["scale"]
        self.growth_tracker[...] = state["growth_tracker"]

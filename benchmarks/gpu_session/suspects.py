"""Stage suspects: microbenchmarks of exactly the operations the cost model suspects, each beside its
prediction, and the cost model's constants refitted to them (about 3 minutes on an H200).

At cifar-tiny's batch 512 (33,280 token rows), for each part on its own (CUDA events around 10 calls):

    bias sums         CuPy's ``sum(axis=0)`` against column_sums.cu's two passes, for each layer's width
    LayerNorm's       the two kernels of before (dx a warp per row; dgamma and dbeta by columns, 6 blocks)
    backward          against the fused pass and its finishing sum
    attention         cuBLAS's batched products around the softmax kernels against attention.cu's fused
                      kernels v1 and v2, forward and backward, cifar-tiny's heads (3 of 64) and
                      cifar-gpu's (12 of 16), float32, TF32 and float16; attention-choice.json: the
                      fastest of each, and the ATTENTION_KERNELS table they justify
    linear_backward   each layer's parts timed apart: dx = dout W^T, dW = x^T dout, the gradient's
                      ``+=``, dW accumulated in place by cuBLAS (beta = 1), db; float32, TF32, float16

so that a per-operation table cannot blame the products for the reduction. The prediction of each row
comes from recording the same call on the simulated GPU (``minivit.sim``) and costing it for an H200
(``minivit.sim.cost``); ``cost-model-fit.json`` holds the constants fitted to these rows, with the error
before and after. In a rehearsal the "measured" times are the CPU's, which only shows that it runs.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from minivit import backend

TOKENS = 65  # cifar-tiny: 64 patches and the CLS token
LAYERS = {"qkv": (192, 576), "o_proj": (192, 192), "fc1": (192, 768), "fc2": (768, 192)}  # (D_in, D_out)
REPEATS = 10


@dataclass
class Case:
    group: str
    name: str
    precision: str  # "float32", "TF32" or "float16"
    setup: object  # (xp, dtype, batch) -> state
    run: object  # state -> None

    @property
    def dtype(self) -> str:
        return "float16" if self.precision == "float16" else "float32"


def _normal(xp, shape, dtype):
    if backend.name == "cupy-sim" and not _arithmetic():  # recording costs only: values do not matter
        return xp.zeros(shape, dtype=dtype)
    return xp.random.default_rng(0).standard_normal(shape, dtype=xp.float32).astype(dtype)


def _arithmetic() -> bool:
    from minivit.sim.counting import arithmetic

    return arithmetic()


def _rows(batch: int) -> int:
    return batch * TOKENS


def _bias_cases() -> list[Case]:
    from minivit.kernels.gpu.column_sums import column_sums

    cases = []
    for D in sorted({width for _, width in LAYERS.values()}):
        def setup(xp, dtype, batch, D=D):
            return _normal(xp, (_rows(batch), D), dtype)

        for precision in ("float32", "float16"):
            cases.append(Case("bias sum", f"CuPy sum(axis=0), D={D}", precision, setup, lambda dout: dout.sum(axis=0)))
            cases.append(Case("bias sum", f"column_sums.cu, D={D}", precision, setup, column_sums))
    return cases


def _layernorm_cases() -> list[Case]:
    from minivit.kernels.gpu import layernorm
    from minivit.kernels.gpu.launch import row_grid

    def setup(xp, dtype, batch):
        x = _normal(xp, (batch, TOKENS, 192), dtype)
        gamma, beta = xp.ones(192, dtype=dtype), xp.zeros(192, dtype=dtype)
        return _normal(xp, x.shape, dtype), layernorm.layernorm_forward(x, gamma, beta, 1e-12)[1]

    def two_kernels(state):  # the kernels of before: dx a warp per row, dgamma and dbeta by columns
        dout, (xhat, rstd, gamma) = state
        xp = backend.xp
        rows, D = dout.size // dout.shape[-1], dout.shape[-1]
        dx, dgamma, dbeta = xp.empty_like(dout), xp.empty(D, dtype=dout.dtype), xp.empty(D, dtype=dout.dtype)
        layernorm.LAYERNORM_BACKWARD_INPUT[dout.dtype](row_grid(rows), (dout, xhat, rstd, gamma, dx, np.int32(rows),
                                                                        np.int32(D)))
        layernorm.LAYERNORM_BACKWARD_PARAMS[dout.dtype]((D + 31) // 32, (dout, xhat, dgamma, dbeta, np.int32(rows),
                                                                         np.int32(D)), block=(32, 32))

    cases = []
    for precision in ("float32", "float16"):
        cases.append(Case("LayerNorm backward", "dx kernel + 6-block parameter kernel (before)", precision, setup,
                          two_kernels))
        cases.append(Case("LayerNorm backward", "fused pass + finishing sum (now)", precision, setup,
                          lambda state: layernorm.layernorm_backward(*state)))
    return cases


ATTENTION_SHAPES = {"cifar-tiny": (192, 3), "cifar-gpu": (192, 12)}  # (D, heads): heads of 64 and of 16
ATTENTION_LABELS = {"batched": "batched cuBLAS products + softmax kernels", "v1": "fused attention.cu v1",
                    "v2": "fused attention.cu v2 (register tiles)"}


def _attention_cases() -> list[Case]:
    """Each implementation (attention.ATTENTION_KERNELS' choices) forward and backward, its backward
    after its own forward, for both presets' heads, float32, TF32 (the batched products' tensor cores)
    and float16."""
    from minivit.kernels.gpu import attention

    def forward(name: str, heads: int):
        def run(state):
            with attention.implementation(name):
                attention.attention_heads_forward(state[0], heads)
        return run

    def backward(name: str):
        def run(state):
            qkv, dcontext, cache = state
            with attention.implementation(name):
                attention.attention_heads_backward(dcontext, cache)
        return run

    cases = []
    for preset, (D, heads) in ATTENTION_SHAPES.items():
        for name in attention.IMPLEMENTATIONS:
            def setup(xp, dtype, batch, name=name, D=D, heads=heads):
                qkv, dcontext = _normal(xp, (batch, TOKENS, 3 * D), dtype), _normal(xp, (batch, TOKENS, D), dtype)
                with attention.implementation(name):
                    return qkv, dcontext, attention.attention_heads_forward(qkv, heads)[1]

            for precision in ("float32", "TF32", "float16"):
                group = f"attention {preset} ({heads} heads of {D // heads})"
                cases.append(Case(f"{group} forward", ATTENTION_LABELS[name], precision, setup, forward(name, heads)))
                cases.append(Case(f"{group} backward", ATTENTION_LABELS[name], precision, setup, backward(name)))
    return cases


def attention_choice(rows: list[dict]) -> dict:
    """The fastest measured implementation per (preset, precision, direction), and the rule it makes for
    attention.ATTENTION_KERNELS: per (dtype, direction), the implementation with the least time summed
    over the presets (TF32 counts as float32: the training runs use it)."""
    labels = {label: name for name, label in ATTENTION_LABELS.items()}
    fastest, totals = {}, {}
    for row in rows:
        if not row["group"].startswith("attention ") or "measured_ms" not in row:
            continue
        preset, direction = row["group"].split()[1], row["group"].split()[-1]
        name, ms = labels[row["case"]], row["measured_ms"]
        key = f"{preset} {row['precision']} {direction}"
        if key not in fastest or ms < fastest[key][1]:
            fastest[key] = (name, ms)
        dtype = "float16" if row["precision"] == "float16" else "float32"
        totals.setdefault((dtype, direction), {}).setdefault(name, 0.0)
        totals[(dtype, direction)][name] += ms
    table = {f"{dtype} {direction}": min(times, key=times.get) for (dtype, direction), times in totals.items()}
    return {"fastest": {key: {"implementation": name, "ms": ms} for key, (name, ms) in fastest.items()},
            "ms_summed_over_presets": {f"{d} {w}": times for (d, w), times in totals.items()},
            "ATTENTION_KERNELS": table}


def _linear_cases() -> list[Case]:
    from minivit.kernels.gpu.column_sums import column_sums

    def in_place(state):  # dW accumulated into the gradient by cuBLAS's gemm with beta = 1
        x, dout, weight, grad = state
        if backend.name == "cupy" and x.dtype != np.float16:
            import cupy.cublas  # (CuPy 14 does not import the submodule with cupy)

            cupy.cublas.gemm("T", "N", x, dout, out=grad, beta=1.0)
        else:  # (the simulation has no cupy.cublas; float16 has no gemm there: the same product, into grad)
            backend.xp.matmul(x.T, dout, out=grad)

    def add_after(state):
        x, dout, weight, grad = state
        grad += x.T @ dout

    parts = {"dx = dout W^T": lambda s: s[1] @ s[2].T, "dW = x^T dout": lambda s: s[0].T @ s[1],
             "dW then += into the gradient": add_after, "dW in place (cuBLAS beta = 1)": in_place,
             "db: CuPy sum(axis=0)": lambda s: s[1].sum(axis=0), "db: column_sums.cu": lambda s: column_sums(s[1])}
    cases = []
    for layer, (D_in, D_out) in LAYERS.items():
        def setup(xp, dtype, batch, D_in=D_in, D_out=D_out):
            return (_normal(xp, (_rows(batch), D_in), dtype), _normal(xp, (_rows(batch), D_out), dtype),
                    _normal(xp, (D_in, D_out), dtype), xp.zeros((D_in, D_out), dtype=dtype))

        for precision in ("float32", "TF32", "float16"):
            for part, run in parts.items():
                if precision == "TF32" and part.startswith("db"):
                    continue  # no product: the float32 row says it
                cases.append(Case(f"linear_backward {layer} ({D_in}->{D_out})", part, precision, setup, run))
    return cases


def all_cases() -> list[Case]:
    return _bias_cases() + _layernorm_cases() + _attention_cases() + _linear_cases()


def _measure_ms(case: Case, state, rehearse: bool) -> float:
    if rehearse:
        start = time.perf_counter()
        case.run(state)
        return 1000 * (time.perf_counter() - start)
    xp = backend.xp
    case.run(state)
    backend.synchronize()
    start, end = xp.cuda.Event(), xp.cuda.Event()
    start.record()
    for _ in range(REPEATS):
        case.run(state)
    end.record()
    end.synchronize()
    return xp.cuda.get_elapsed_time(start, end) / REPEATS


def _records(case: Case, batch: int) -> list:
    """The launches of one call of the case, recorded on the simulated GPU (arithmetic skipped)."""
    from minivit import sim
    from minivit.sim.counting import costs_only

    previous = backend.name
    backend.use("cupy-sim")
    try:
        with costs_only():
            state = case.setup(backend.xp, case.dtype, batch)
            backend.reset_sim_counters()
            case.run(state)
        return sim.records()
    finally:
        backend.use(previous)


def stage_suspects(args) -> dict:
    from minivit.sim import cost

    batch = 2 if args.rehearse else 512
    rows, fit_cases = [], []
    started = time.perf_counter()
    try:
        for case in all_cases():
            try:
                backend.use(args.device_backend)
                backend.use_tf32(case.precision == "TF32")
                state = case.setup(backend.xp, case.dtype, batch)
                measured = _measure_ms(case, state, args.rehearse)
                del state
                backend.use_tf32(False)
                records = _records(case, batch)
                predicted = cost.predict(records, "H200", tf32=case.precision == "TF32").step_ms
                fit_cases.append((records, case.precision == "TF32", measured, "step"))
                row = {"group": case.group, "case": case.name, "precision": case.precision, "measured_ms": measured,
                       "predicted_ms": predicted, "launches": len(records),
                       "fewest_blocks": min(r.grid for r in records), "most_serial": max(r.serial for r in records)}
            except Exception as error:  # noqa: BLE001 (one case's failure is recorded, the others run)
                row = {"group": case.group, "case": case.name, "precision": case.precision,
                       "error": f"{type(error).__name__}: {error}"}
            finally:
                backend.use_tf32(False)
            rows.append(row)
            print(f"  suspects: {row}", flush=True)
    finally:
        backend.use("numpy")
    fit = _refit(fit_cases)
    choice = attention_choice(rows)
    result = {"batch_size": batch, "rows": rows, "fit": fit, "attention_choice": choice,
              "seconds": time.perf_counter() - started, "table": table(rows)}
    (args.out / "suspects.json").write_text(json.dumps(rows, indent=2))
    (args.out / "cost-model-fit.json").write_text(json.dumps(fit, indent=2))
    (args.out / "attention-choice.json").write_text(json.dumps(choice, indent=2))
    print(f"  suspects: attention's table as these numbers make it: {choice['ATTENTION_KERNELS']}", flush=True)
    (args.out / "suspects.md").write_text(result["table"] + "\n")
    return result


def _rms(cases, constants) -> float:
    from minivit.sim import cost

    errors = [math.log(max(cost.predict(records, "H200", constants, tf32).step_ms, 1e-6) / max(measured, 1e-6)) ** 2
              for records, tf32, measured, _ in cases]
    return math.exp(math.sqrt(sum(errors) / max(1, len(errors)))) - 1


def _refit(cases) -> dict:
    """The cost model's constants fitted to these rows (scipy), with the error before and after."""
    from minivit.sim import cost

    if len(cases) < 6:
        return {"error": "too few measured rows to fit"}
    try:
        fitted = cost.fit(cases, "H200", start=cost.CONSTANTS)
    except Exception as error:  # noqa: BLE001
        return {"error": f"{type(error).__name__}: {error}"}
    return {"before": asdict(cost.CONSTANTS), "after": {k: float(v) for k, v in asdict(fitted).items()},
            "rms_error_before": _rms(cases, cost.CONSTANTS), "rms_error_after": _rms(cases, fitted), "rows": len(cases)}


def table(rows: list[dict]) -> str:
    lines = ["| group | case | precision | measured ms | predicted ms | launches | fewest blocks | most serial |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['group']} | {row['case']} | {row['precision']} | {row['error']} | | | | |")
            continue
        lines.append(f"| {row['group']} | {row['case']} | {row['precision']} | {row['measured_ms']:.3f} | "
                     f"{row['predicted_ms']:.3f} | {row['launches']} | {row['fewest_blocks']} | {row['most_serial']} |")
    return "\n".join(lines)

"""CUDA sources and their compilation (NVRTC, through CuPy), with or without a GPU.

    sources()                      {file name: full source} of minivit's CUDA kernels (gpu/*.cu)
    compile_check(source, name)    compile for sm_90 and raise CompileError with the compiler's log
    compile_elementwise(...)       an ElementwiseKernel's pieces as CUDA C, compiled the same way

Compiling needs only CuPy's NVRTC bindings (``cupy.cuda.nvrtc``) and the NVRTC library,
not a GPU: the tests compile every kernel on machines without one, so a syntax or type
error in a kernel fails there, long before anyone has a GPU at hand.
"""

from __future__ import annotations

from pathlib import Path

CUDA_DIR = Path(__file__).resolve().parent / "gpu"  # each .cu beside the Python module that launches it
OPTIONS = ("-std=c++17",)  # what gpu/launch.py passes to CuPy's RawModule; the architecture is added per device
CHECK_ARCHITECTURE = "sm_90"  # the H100/H200 the GPU runs use


class CompileError(RuntimeError):
    """A CUDA source that NVRTC refused; the message holds its log."""


def source(file_name: str) -> str:
    """A kernel file with the shared helpers (gpu/common.cuh) in front, as it is compiled."""
    common = (CUDA_DIR / "common.cuh").read_text()
    return f"{common}\n#line 1 \"{file_name}\"\n{(CUDA_DIR / file_name).read_text()}"


def sources() -> dict[str, str]:
    """{file name: source} for every kernel file."""
    return {path.name: source(path.name) for path in sorted(CUDA_DIR.glob("*.cu"))}


def _nvrtc():
    try:
        from cupy.cuda import nvrtc
    except ImportError as error:
        raise RuntimeError("Compiling CUDA sources needs CuPy (with its NVRTC library): "
                           "pip install 'cupy-cuda13x' nvidia-cuda-nvrtc (see requirements-dev.txt).") from error
    return nvrtc


def compile_check(cuda_source: str, name: str = "kernel.cu", architecture: str = CHECK_ARCHITECTURE) -> str:
    """Compile ``cuda_source`` to machine code for ``architecture``; returns the compiler's log (warnings).

    Raises CompileError, with the log, if NVRTC refuses it.
    """
    nvrtc = _nvrtc()
    program = nvrtc.createProgram(cuda_source, name, [], [])
    try:
        try:
            nvrtc.compileProgram(program, [f"--gpu-architecture={architecture}", *OPTIONS])
        except nvrtc.NVRTCError as error:
            raise CompileError(f"{name} does not compile for {architecture}:\n{nvrtc.getProgramLog(program)}") \
                from error
        return nvrtc.getProgramLog(program)
    finally:
        nvrtc.destroyProgram(program)


def kernel_names(file_name: str) -> set[str]:
    """The names of the kernels a file defines (its PTX's entry points), compiled for the check architecture."""
    import re

    nvrtc = _nvrtc()
    program = nvrtc.createProgram(source(file_name), file_name, [], [])
    try:
        nvrtc.compileProgram(program, [f"--gpu-architecture=compute_{CHECK_ARCHITECTURE.split('_')[1]}", *OPTIONS])
        ptx = nvrtc.getPTX(program)
    finally:
        nvrtc.destroyProgram(program)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    return set(re.findall(r"\.entry\s+(\w+)\(", ptx))


# CuPy's type names in ElementwiseKernel parameter lists, as C types.
C_TYPES = {"float16": "half", "float32": "float", "float64": "double", "int8": "signed char", "int16": "short",
           "int32": "int", "int64": "long long", "uint8": "unsigned char", "bool": "bool"}


def _parameters(text: str, inputs: bool, generic: str) -> list[tuple[str, str, bool]]:
    """(C type, name, raw?) for each "type name" of an ElementwiseKernel parameter list."""
    parameters = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        words = item.split()
        raw = words[0] == "raw"
        words = words[1:] if raw else words
        if len(words) != 2:
            raise CompileError(f"Cannot read the parameter {item!r}: write it as 'type name', e.g. 'float32 x'.")
        type_name, name = words
        c_type = C_TYPES.get(type_name, generic if len(type_name) == 1 else None)
        if c_type is None:
            raise CompileError(f"Unknown type {type_name!r} in {item!r}: use one of {', '.join(C_TYPES)} "
                               "or a one-letter type placeholder such as T.")
        parameters.append((c_type, name, raw))
    return parameters


def elementwise_source(in_params: str, out_params: str, operation: str, name: str, generic: str = "float") -> str:
    """The CUDA C that an ``ElementwiseKernel(in_params, out_params, operation, name)`` stands for:
    one thread per element ``i``, each input read into a local, each output a reference.
    Type placeholders (one letter, e.g. T) become ``generic``."""
    inputs = _parameters(in_params, True, generic)
    outputs = _parameters(out_params, False, generic)
    arguments = [f"const {c} * __restrict__ _raw_{n}" for c, n, _ in inputs] + \
                [f"{c} * _raw_{n}" for c, n, _ in outputs] + ["long long _n"]
    locals_ = [f"        const {c} {n} = _raw_{n}[i];" if not raw else f"        const {c} * {n} = _raw_{n};"
               for c, n, raw in inputs]
    locals_ += [f"        {c} &{n} = _raw_{n}[i];" for c, n, _ in outputs]
    placeholders = sorted({type_name for type_name in
                           (part.split()[-2] for part in (in_params + "," + out_params).split(",") if part.strip())
                           if len(type_name) == 1})
    typedefs = "".join(f"typedef {generic} {placeholder};\n" for placeholder in placeholders)
    return (f"{typedefs}extern \"C\" __global__ void {name}({', '.join(arguments)}) {{\n"
            "    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < _n;\n"
            "         i += (long long)blockDim.x * gridDim.x) {\n"
            + "\n".join(locals_) + f"\n        {operation};\n    }}\n}}\n")


def compile_elementwise(in_params: str, out_params: str, operation: str, name: str) -> str:
    """Compile what ``cupy.ElementwiseKernel(in_params, out_params, operation, name)`` would compile
    (for float32 where types are placeholders); returns the log, raises CompileError with it."""
    return compile_check(elementwise_source(in_params, out_params, operation, name), f"{name}.cu")

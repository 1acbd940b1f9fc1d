"""Reading weight files without trusting them: every refusal names the file and says why.

    read_safetensors(path)     {name: NumPy array}; bfloat16 tensors become float32
    read_torch_file(path)      a PyTorch .pth/.bin of plain tensors (torch.load, weights_only=True)
    read_npz(path)             {name: array} of an .npz, read without pickle
    read_json(path)            a JSON file (config.json ...), or an error naming it

No reader runs code from a file: safetensors and .npz hold only raw arrays (an .npz with
pickled objects is refused); a torch pickle is read with ``weights_only=True``, and one
that needs more than tensors to load is refused, because loading it would run whatever
code it names.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np  # host side: files into arrays

# safetensors' dtype names -> NumPy; BF16 is read as uint16 bits and widened to float32.
_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
                       "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
                       "BOOL": np.bool_}


class WeightFileError(ValueError):
    """A weight or config file that cannot be read as what it claims to be."""


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file: an 8-byte header length, a JSON header
    ({name: {"dtype", "shape", "data_offsets": [begin, end]}}), then the raw little-endian data."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise WeightFileError(f"{path} is not a safetensors file: it is {len(data)} bytes long.")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > len(data) - 8:
        raise WeightFileError(f"{path} is not a safetensors file (or is truncated): its header claims "
                              f"{header_size} bytes, the file has {len(data) - 8} after the length.")
    try:
        header = json.loads(data[8:8 + header_size])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightFileError(f"{path} is not a safetensors file: its header is not JSON ({error}).") from error
    if not isinstance(header, dict):
        raise WeightFileError(f"{path} is not a safetensors file: its header is not a JSON object.")
    body = memoryview(data)[8 + header_size:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _safetensors_tensor(path, name, entry, body)
    return tensors


def _safetensors_tensor(path: Path, name: str, entry, body: memoryview) -> np.ndarray:
    try:
        dtype_name, shape, (begin, end) = entry["dtype"], [int(n) for n in entry["shape"]], entry["data_offsets"]
    except (TypeError, KeyError, ValueError) as error:
        raise WeightFileError(f"{path}: the header entry of {name!r} is malformed ({entry!r}).") from error
    if dtype_name not in _SAFETENSORS_DTYPES:
        raise WeightFileError(f"{path}: tensor {name!r} has dtype {dtype_name}, which minivit does not read "
                              f"(it reads {', '.join(_SAFETENSORS_DTYPES)}).")
    dtype = np.dtype(_SAFETENSORS_DTYPES[dtype_name]).newbyteorder("<")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if not (0 <= begin <= end <= len(body)) or end - begin != expected:
        raise WeightFileError(f"{path}: tensor {name!r} ({dtype_name} {shape}) does not fit its place in the file "
                              "(truncated or corrupt).")
    array = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
    if dtype_name == "BF16":  # the upper half of a float32's bits
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_torch_file(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch pickle (.pth, .pt, .bin), read with ``weights_only=True``."""
    path = Path(path)
    try:
        import torch
    except ImportError as error:
        raise WeightFileError(f"{path} is a PyTorch pickle; reading it needs torch (or convert it to "
                              ".safetensors).") from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightFileError(
            f"Refusing {path}: it is a PyTorch pickle that holds more than tensors (the pickle names Python code "
            "that loading it would run), and minivit loads only plain tensors. A checkpoint of weights alone, "
            "or its .safetensors form, loads; this file does not.") from error
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise WeightFileError(f"{path} is not a readable PyTorch weights file ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}).") from error
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("model", state))
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise WeightFileError(f"{path} does not hold a state dict of tensors (name -> tensor).")
    return {name: _torch_to_numpy(value) for name, value in state.items()}


def _torch_to_numpy(tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":
        tensor = tensor.float()
    return tensor.numpy()


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an .npz archive, read with ``allow_pickle=False``."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            magic = file.read(4)
    except OSError as error:
        raise WeightFileError(f"Cannot read {path}: {error.strerror or error}.") from error
    if magic != b"PK\x03\x04":
        raise WeightFileError(f"{path} is not an .npz archive (a zip of arrays); it starts with {magic!r}.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as error:
        if "pickle" in str(error):
            raise WeightFileError(f"Refusing {path}: it holds pickled Python objects, which minivit never loads "
                                  "(unpickling can run code); an archive of plain arrays loads.") from None
        raise WeightFileError(f"{path} is not a readable .npz archive ({error}).") from error
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise WeightFileError(f"{path} is not a readable .npz archive, corrupt or truncated "
                              f"({type(error).__name__}: {error}).") from error


def read_json(path: str | Path) -> dict:
    """A JSON object from ``path``; a file that is not JSON (or not an object) is named."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightFileError(f"{path} is not valid JSON ({error}).") from error
    if not isinstance(value, dict):
        raise WeightFileError(f"{path} holds JSON, but not an object ({{...}}): got a {type(value).__name__}.")
    return value

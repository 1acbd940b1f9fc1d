"""From a sequence of tokens to one vector per image: the CLS token, or the mean of all tokens."""

from __future__ import annotations

from minivit import backend

POOLINGS = ("cls", "mean")


def pool_forward(hidden_states, pooling: str = "cls"):
    """(B, T, D) -> (B, D). "cls": token 0, as ViT classifies. "mean": the average over tokens."""
    if pooling == "cls":
        out = hidden_states[:, 0, :]
    elif pooling == "mean":
        out = hidden_states.mean(axis=1)
    else:
        raise ValueError(f"Unknown pooling {pooling!r}: choose one of {POOLINGS}.")
    return out, (hidden_states.shape, hidden_states.dtype, pooling)


def pool_backward(dpooled, cache):
    """"cls": the gradient lands on token 0, zeros elsewhere. "mean": spread evenly, / T."""
    xp = backend.xp
    shape, dtype, pooling = cache
    if pooling == "cls":
        dhidden = xp.zeros(shape, dtype=dtype)
        dhidden[:, 0, :] = dpooled
        return dhidden
    num_tokens = shape[1]
    return xp.broadcast_to((dpooled / num_tokens)[:, None, :], shape).copy()

"""The two token-level embedding steps of ViT: prepend the CLS token, add position embeddings."""

from __future__ import annotations

from minivit import backend


def cls_concat_forward(patch_embeddings, cls_token):
    """(B, N, D) patches and a (1, 1, D) CLS token -> (B, N+1, D), the CLS token first.

    Every image gets the same CLS token (a broadcast copy).
    """
    xp = backend.xp
    B, _, D = patch_embeddings.shape
    cls_tokens = xp.broadcast_to(cls_token, (B, 1, D))
    return xp.concatenate([cls_tokens, patch_embeddings], axis=1), B


def cls_concat_backward(dout, batch_size):
    """The gradient splits: the patch part passes through, and the CLS token,
    shared by all B images, gets the sum of its B copies' gradients.

    Returns (dpatch_embeddings (B, N, D), dcls_token (1, 1, D)).
    """
    dpatch_embeddings = dout[:, 1:, :]
    dcls_token = dout[:, :1, :].sum(axis=0, keepdims=True)
    return dpatch_embeddings, dcls_token


POSITION_EMBEDDING_TYPES = ("learned", "none")  # ViTConfig.position_embedding_type: a learned table, or no positions


def position_add_forward(tokens, position_embeddings):
    """(B, N+1, D) tokens + (1, N+1, D) learned position embeddings, broadcast over the batch."""
    return tokens + position_embeddings, None


def position_add_backward(dout, cache=None):
    """Returns (dtokens, dposition_embeddings): the table is shared by the batch,
    so its gradient sums over the batch axis."""
    return dout, dout.sum(axis=0, keepdims=True)

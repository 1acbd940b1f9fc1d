"""Cutting an image into patches: im2col and its adjoint col2im.

A patch projection is a convolution whose kernel covers one patch. Unrolling
every patch into a row ("im2col") turns it into one matrix product:

    cols = im2col(x)                 # (B, N, C*p*p), one row per patch
    out  = cols @ W + b              # (B, N, D), W = conv_weight.reshape(D, C*p*p).T

Each row lists a patch's pixels in the order (channel, row, column), which is
exactly how a Conv2d weight of shape (D, C, p, p) flattens, and the patches run
row by row over the image, as ``conv(x).flatten(2).transpose(1, 2)`` lists them.

With stride == patch size the patches tile the image and im2col is a pure
reshape/transpose. With a smaller stride they overlap; a pixel then sits in
several patches, and col2im (the backward) must *add* the gradient of every
copy back onto that pixel.
"""

from __future__ import annotations

from minivit import backend


def patch_grid_size(image_size: int, patch_size: int, stride: int) -> int:
    """Patches along one side: (image_size - patch_size) // stride + 1."""
    return (image_size - patch_size) // stride + 1


def im2col(x, patch_size: int, stride: int | None = None):
    """(B, C, H, W) images -> (B, N, C*p*p) patch rows, N = H_out * W_out."""
    xp = backend.xp
    stride = patch_size if stride is None else stride
    B, C, H, W = x.shape
    p = patch_size
    H_out, W_out = patch_grid_size(H, p, stride), patch_grid_size(W, p, stride)

    if stride == p and H == H_out * p and W == W_out * p:
        # Tiling patches: split H into (H_out, p) and W into (W_out, p), then
        # bring the patch index forward and the within-patch index back.
        cols = x.reshape(B, C, H_out, p, W_out, p)  # (B, C, H_out, p, W_out, p)
        cols = cols.transpose(0, 2, 4, 1, 3, 5)  # (B, H_out, W_out, C, p, p)
        return cols.reshape(B, H_out * W_out, C * p * p)

    # General stride: for each offset (i, j) inside the patch, the pixels that
    # sit at that offset in every patch form a strided slice of the image.
    cols = xp.empty((B, H_out, W_out, C, p, p), dtype=x.dtype)
    for i in range(p):
        for j in range(p):
            rows = slice(i, i + stride * (H_out - 1) + 1, stride)
            columns = slice(j, j + stride * (W_out - 1) + 1, stride)
            cols[:, :, :, :, i, j] = x[:, :, rows, columns].transpose(0, 2, 3, 1)
    return cols.reshape(B, H_out * W_out, C * p * p)


def col2im(dcols, image_shape: tuple, patch_size: int, stride: int | None = None):
    """The adjoint of im2col: (B, N, C*p*p) patch-row gradients -> (B, C, H, W).

    Where patches overlap, a pixel receives the sum of the gradients of all its copies.
    """
    xp = backend.xp
    stride = patch_size if stride is None else stride
    B, C, H, W = image_shape
    p = patch_size
    H_out, W_out = patch_grid_size(H, p, stride), patch_grid_size(W, p, stride)
    dcols = dcols.reshape(B, H_out, W_out, C, p, p)

    if stride == p and H == H_out * p and W == W_out * p:
        # Tiling patches: every pixel is in exactly one patch; undo the transpose.
        dx = dcols.transpose(0, 3, 1, 4, 2, 5)  # (B, C, H_out, p, W_out, p)
        return dx.reshape(B, C, H, W)

    dx = xp.zeros(image_shape, dtype=dcols.dtype)
    for i in range(p):
        for j in range(p):
            rows = slice(i, i + stride * (H_out - 1) + 1, stride)
            columns = slice(j, j + stride * (W_out - 1) + 1, stride)
            # '+=' on a strided slice: different (i, j) may hit the same pixel,
            # but within one (i, j) every pixel is hit at most once.
            dx[:, :, rows, columns] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dx

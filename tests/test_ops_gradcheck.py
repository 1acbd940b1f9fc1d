"""Every forward/backward pair against centred finite differences, in float64.

Tolerance 1e-6 for each; the comment next to each check gives the magnitude
seen on a correct implementation (a wrong backward gives 1e-2 or worse).
"""

import pytest

from minivit import backend, ops
from minivit.gradcheck import check_op

TOL = 1e-6


def normal(seed, *shape, scale=1.0):
    return backend.default_rng(seed).standard_normal(shape) * scale


def test_linear(backend_name):
    inputs = {"x": normal(0, 2, 5, 7), "weight": normal(1, 7, 4), "bias": normal(2, 4)}
    report = check_op(ops.linear_forward, ops.linear_backward, inputs)
    report.assert_close(TOL)  # about 1e-10


def test_linear_without_bias(backend_name):
    report = check_op(lambda x, w: ops.linear_forward(x, w, None),
                      lambda dout, cache: ops.linear_backward(dout, cache)[:2],
                      {"x": normal(0, 6, 3), "weight": normal(1, 3, 2)})
    report.assert_close(TOL)  # about 1e-10


@pytest.mark.parametrize("eps", [1e-12, 1e-5])
def test_layernorm(backend_name, eps):
    inputs = {"x": normal(0, 2, 3, 6), "gamma": normal(1, 6), "beta": normal(2, 6)}
    report = check_op(ops.layernorm_forward, ops.layernorm_backward, inputs, kwargs={"eps": eps})
    report.assert_close(TOL)  # about 1e-11


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(backend_name, approximate):
    report = check_op(ops.gelu_forward, ops.gelu_backward, {"x": normal(0, 4, 9)},
                      kwargs={"approximate": approximate})
    report.assert_close(TOL)  # about 1e-10


def test_softmax(backend_name):
    report = check_op(ops.softmax_forward, ops.softmax_backward, {"x": normal(0, 3, 4, 5)})
    report.assert_close(TOL)  # about 1e-11


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_dropout(backend_name, p):
    """The same seed gives the same mask on every call, so f is a fixed function."""
    def forward(x):
        return ops.dropout_forward(x, p, backend.default_rng(7), training=True)

    report = check_op(forward, ops.dropout_backward, {"x": normal(0, 4, 6)})
    report.assert_close(TOL)  # about 1e-11: dropout is linear


def test_residual(backend_name):
    report = check_op(ops.residual_forward, ops.residual_backward,
                      {"skip": normal(0, 2, 3), "branch": normal(1, 2, 3)})
    report.assert_close(TOL)  # about 1e-11


def test_cls_concat(backend_name):
    report = check_op(ops.cls_concat_forward, ops.cls_concat_backward,
                      {"patches": normal(0, 3, 4, 5), "cls_token": normal(1, 1, 1, 5)})
    report.assert_close(TOL)  # about 1e-11


def test_position_add(backend_name):
    report = check_op(ops.position_add_forward, ops.position_add_backward,
                      {"tokens": normal(0, 3, 4, 5), "position_embeddings": normal(1, 1, 4, 5)})
    report.assert_close(TOL)  # about 1e-11


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling(backend_name, pooling):
    report = check_op(ops.pool_forward, ops.pool_backward, {"hidden": normal(0, 2, 5, 3)},
                      kwargs={"pooling": pooling})
    report.assert_close(TOL)  # about 1e-11


@pytest.mark.parametrize("stride", [4, 2, 3])
def test_im2col(backend_name, stride):
    """stride 4 = patch: tiling (reshape path); 2 and 3: overlapping (col2im must add)."""
    def forward(x):
        return ops.im2col(x, 4, stride), x.shape

    def backward(dcols, shape):
        return ops.col2im(dcols, shape, 4, stride)

    report = check_op(forward, backward, {"x": normal(0, 2, 3, 10, 10) if stride != 4 else normal(0, 2, 3, 8, 8)})
    report.assert_close(TOL)  # about 1e-11: im2col only moves numbers


def test_attention(backend_name):
    inputs = {"q": normal(0, 2, 3, 5, 4), "k": normal(1, 2, 3, 5, 4), "v": normal(2, 2, 3, 5, 4)}
    report = check_op(ops.attention_forward, ops.attention_backward, inputs)
    report.assert_close(TOL)  # about 1e-9


def test_attention_with_dropout(backend_name):
    def forward(q, k, v):
        return ops.attention_forward(q, k, v, dropout_p=0.25, rng=backend.default_rng(3), training=True)

    inputs = {"q": normal(0, 2, 2, 5, 4), "k": normal(1, 2, 2, 5, 4), "v": normal(2, 2, 2, 5, 4)}
    check_op(forward, ops.attention_backward, inputs).assert_close(TOL)  # about 1e-9


@pytest.mark.parametrize("num_heads", [1, 3])
def test_attention_heads(backend_name, num_heads):
    """q, k and v side by side in one (B, T, 3D) array, heads split, attended and merged."""
    inputs = {"qkv": normal(0, 2, 5, 3 * 6)}
    report = check_op(lambda qkv: ops.attention_heads_forward(qkv, num_heads), ops.attention_heads_backward, inputs)
    report.assert_close(TOL)  # about 1e-10


@pytest.mark.parametrize("num_heads", [1, 3])
@pytest.mark.parametrize("with_qkv_bias", [True, False])
def test_multi_head_attention(backend_name, num_heads, with_qkv_bias):
    D = 6
    inputs = {"x": normal(0, 2, 5, D)}
    for k, name in enumerate(["q", "k", "v", "o"]):
        inputs[f"{name}_weight"] = normal(10 + k, D, D, scale=0.5)
        inputs[f"{name}_bias"] = normal(20 + k, D) if (with_qkv_bias or name == "o") else None
    arrays = {name: value for name, value in inputs.items() if value is not None}

    def forward(**kwargs):
        full = {**inputs, **kwargs}
        return ops.multi_head_attention_forward(*full.values(), num_heads=num_heads)

    def backward(dout, cache):
        grads = ops.multi_head_attention_backward(dout, cache)
        return tuple(g for g, name in zip(grads, inputs) if name in arrays)

    report = check_op(lambda *values: forward(**dict(zip(arrays, values))), backward, arrays)
    report.assert_close(TOL)  # about 1e-9


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy(backend_name, label_smoothing):
    xp = backend.xp
    labels = xp.asarray([0, 3, 2, 3])

    def forward(logits):
        return ops.cross_entropy_forward(logits, labels, label_smoothing)

    report = check_op(forward, ops.cross_entropy_backward, {"logits": normal(0, 4, 5)})
    report.assert_close(TOL)  # about 1e-11


def test_cross_entropy_soft_targets(backend_name):
    xp = backend.xp
    targets = xp.asarray([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5]])
    report = check_op(lambda z: ops.cross_entropy_forward(z, targets), ops.cross_entropy_backward,
                      {"logits": normal(0, 2, 3)})
    report.assert_close(TOL)  # about 1e-10


def test_cross_entropy_matches_log_of_uniform_at_zero_logits():
    xp = backend.xp
    loss, _ = ops.cross_entropy_forward(xp.zeros((4, 10)), xp.asarray([1, 2, 3, 4]))
    assert abs(float(loss) - 2.302585092994046) < 1e-12  # ln(10)


def test_gradcheck_names_the_failing_tensor():
    """A deliberately wrong backward fails, and the message says which tensor, where and by how much."""
    def wrong_backward(dout, cache):
        dx, dweight, dbias = ops.linear_backward(dout, cache)
        return dx, dweight * 1.01, dbias

    report = check_op(ops.linear_forward, wrong_backward,
                      {"x": normal(0, 3, 4), "weight": normal(1, 4, 2), "bias": normal(2, 2)})
    with pytest.raises(AssertionError, match=r"weight: max relative error [45]\.\d+e-03 at index \("):
        report.assert_close(TOL)
    assert report.worst.name == "weight"


def test_gradcheck_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        check_op(ops.softmax_forward, ops.softmax_backward, {"x": normal(0, 3).astype("float32")})


@pytest.mark.parametrize("old_grid,new_grid", [((3, 3), (5, 5)), ((4, 4), (2, 3)), ((3, 3), (3, 3))])
def test_position_interpolation(backend_name, old_grid, new_grid):
    """Bicubic resizing of the position grid (CLS row kept apart) is linear: its backward is exact."""
    table = normal(0, 1, 1 + old_grid[0] * old_grid[1], 4)
    report = check_op(ops.interpolate_position_forward, ops.interpolate_position_backward,
                      {"position_embeddings": table}, kwargs={"old_grid": old_grid, "new_grid": new_grid})
    report.assert_close(TOL)  # about 1e-11


def test_bicubic_matrix_rows_sum_to_one_and_same_size_is_identity():
    """Cubic convolution reproduces constants, and resizing to the same size changes nothing."""
    xp = backend.xp
    for in_size, out_size in [(3, 7), (8, 5), (14, 24)]:
        matrix = ops.interpolate.bicubic_matrix(in_size, out_size)
        assert matrix.shape == (out_size, in_size)
        assert float(xp.abs(matrix.sum(axis=1) - 1).max()) < 1e-12
    assert float(xp.abs(ops.interpolate.bicubic_matrix(6, 6) - xp.eye(6)).max()) < 1e-12

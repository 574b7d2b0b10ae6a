"""Column convention (docs/math.md, sections 1 and 6): checked public kernels over the column loops
of ``kernels/textbook.py`` (F1, B2, B3, B4 as literal loop nests, serial).

Examples are columns: A_prev (n_in, m), W (n_out, n_in), b (n_out,), Z (n_out, m). Every quantity is
the transpose of its row-convention twin. Element-wise activations do not care about the
convention; softmax and the losses run over a column here, so they go through the row kernels on
the transpose (a column of Z is a row of Z.T).
"""
import numpy as np

from .. import _checks
from .._checks import float_array
from .._numba import refuse_in_forked_child
from . import activations as _row_act
from . import losses as _row_loss
from .textbook import (_col_bias_grad_into, _col_input_grad_into, _col_linear_into,
                       _col_per_example_sq_norms_into, _col_per_example_weight_grads_into,
                       _col_weight_grad_into)


def dense_forward(A_prev, W, b):
    """F1 (column form) ``Z[j,i] = sum_k W[j,k] A_prev[k,i] + b[j]``.

    A_prev (n_in, m), W (n_out, n_in), b (n_out,) -> Z (n_out, m).
    """
    A_prev, W, b = _checks.col_layer(A_prev, W, b)
    Z = np.empty((W.shape[0], A_prev.shape[1]), dtype=W.dtype)
    _col_linear_into(W, A_prev, b, Z)
    return Z


def dense_backward(dZ, A_prev, W):
    """B4 ``dA_prev[k,i] = sum_j W[j,k] dZ[j,i]``, B2 ``dW[j,k] = (1/m) sum_i dZ[j,i] A_prev[k,i]``,
    B3 ``db[j] = (1/m) sum_i dZ[j,i]`` (column form).

    dZ (n_out, m), A_prev (n_in, m), W (n_out, n_in) -> dA_prev (n_in, m), dW (n_out, n_in), db (n_out,).
    """
    dZ, A_prev, W = _checks.col_delta(dZ, A_prev, W)
    dA_prev, dW, db = np.empty_like(A_prev), np.empty_like(W), np.empty(W.shape[0], W.dtype)
    _col_input_grad_into(W, dZ, dA_prev)
    _col_weight_grad_into(dZ, A_prev, dW)
    _col_bias_grad_into(dZ, db)
    return dA_prev, dW, db


@refuse_in_forked_child
def activation_forward(name, Z):
    """F2/F3 (column form): ``A[j,i] = g(Z[j,i])``; softmax over each column. Z (n, m) -> A (n, m)."""
    return np.ascontiguousarray(_row_act.activation_forward(name, float_array("Z", Z, 2).T).T)


@refuse_in_forked_child
def activation_backward(name, dA, Z, A):
    """B5/B7 (column form): ``dZ = dA * g'(Z)``, or softmax's Jacobian per column. (n, m) -> (n, m)."""
    return np.ascontiguousarray(_row_act.activation_backward(name, *(float_array(k, x, 2).T for k, x in
                                                                    (("dA", dA), ("Z", Z), ("A", A)))).T)


def loss_forward(name, Z_L, Y):
    """Cost of the B8 pairs, column form: Z_L, Y (n_L, m) -> J."""
    return _row_loss.loss_forward(name, float_array("Z_L", Z_L, 2).T, float_array("Y", Y, 2).T)


def output_delta(name, A_L, Y):
    """B8 (column form) ``dZ_L = A_L - Y``, (n_L, m)."""
    return np.ascontiguousarray(_row_loss.output_delta(name, float_array("A_L", A_L, 2).T,
                                                       float_array("Y", Y, 2).T).T)


def per_example_weight_grads(A_prev, dZ):
    """B1 (column form) ``dW(i)[k,j] = dZ[k,i] * A_prev[j,i]``. A_prev (n_in, m), dZ (n_out, m) -> (m, n_out, n_in)."""
    A_prev, dZ = _col_pair(A_prev, dZ)
    G = np.empty((A_prev.shape[1], dZ.shape[0], A_prev.shape[0]), dtype=dZ.dtype)
    _col_per_example_weight_grads_into(A_prev, dZ, G)
    return G


def per_example_sq_norms(A_prev, dZ):
    """N1 (column form) ``(||A_prev[:, i]||^2 + 1) * ||dZ[:, i]||^2`` -> (m,)."""
    A_prev, dZ = _col_pair(A_prev, dZ)
    out = np.empty(A_prev.shape[1], dtype=dZ.dtype)
    _col_per_example_sq_norms_into(A_prev, dZ, out)
    return out


def _col_pair(A_prev, dZ):
    """Column convention: A_prev (n_in, m) and dZ (n_out, m), one column per example in both."""
    A_prev, dZ = float_array("A_prev", A_prev, 2), float_array("dZ", dZ, 2)
    _checks.shape("dZ", dZ, (None, A_prev.shape[1]), "(n_out, m)")
    _checks.same_dtype(A_prev=A_prev, dZ=dZ)
    return A_prev, dZ

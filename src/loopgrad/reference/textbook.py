"""Twin of ``loopgrad.kernels.textbook``: the same equations in matrix form (the reference's own)."""
from . import activations, dense, losses


def dense_forward(A_prev, W, b):
    """F1 ``Z = A_prev @ W + b``."""
    return dense.dense_forward(A_prev, W, b)


def dense_backward(dZ, A_prev, W):
    """B4 ``dA_prev = dZ @ W.T``, B2 ``dW = A_prev.T @ dZ / m``, B3 ``db = dZ.sum(0) / m``."""
    return dense.dense_backward(dZ, A_prev, W)


def per_example_weight_grads(A_prev, dZ):
    """B1 ``dW(i) = outer(A_prev[i], dZ[i])``."""
    return dense.per_example_weight_grads(A_prev, dZ)


def per_example_sq_norms(A_prev, dZ):
    """N1 ``(||A_prev[i]||^2 + 1) * ||dZ[i]||^2``."""
    return dense.per_example_sq_norms(A_prev, dZ)


def activation_forward(name, Z):
    """F2 ``A = g(Z)``; F3 softmax."""
    return activations.activation_forward(name, Z)


def activation_backward(name, dA, Z, A):
    """B5 ``dZ = dA * g'(Z)``; B7 softmax."""
    return activations.activation_backward(name, dA, Z, A)


def loss_forward(name, Z_L, Y):
    """Cost of the B8 pairs, ``J = mean_i L(i)``."""
    return losses.loss_forward(name, Z_L, Y)


def output_delta(name, A_L, Y):
    """B8 ``dZ_L = A_L - Y``."""
    return losses.output_delta(name, A_L, Y)

"""loopgrad's loop kernels: every sum of backpropagation as an explicit index loop.

Each public kernel here has a twin of the same name and signature in
``loopgrad.reference`` that computes the matrix form with vectorised NumPy.
"""
from .activations import activation_backward, activation_forward
from .dense import dense_backward, dense_forward, per_example_sq_norms, per_example_weight_grads
from .losses import loss_forward, output_delta
from . import col, textbook  # noqa: E402,F401  (lg.kernels.col works without its own import)

__all__ = [
    "dense_forward", "dense_backward", "activation_forward", "activation_backward",
    "loss_forward", "output_delta", "per_example_weight_grads", "per_example_sq_norms",
]

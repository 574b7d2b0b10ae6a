"""Names and constants shared by the loop kernels and their NumPy twins.

Activations and losses are chosen by name at the public boundary and by a small
integer code inside compiled code (numba cannot dispatch on strings cheaply).
"""
import math

import numpy as np

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softplus", "gelu", "softmax", "exp")
ACTIVATION_CODE = {name: code for code, name in enumerate(ACTIVATIONS)}
IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTPLUS, GELU, SOFTMAX, EXP = range(len(ACTIVATIONS))
LEAKY_SLOPE = 0.01
# exp(z) is taken at min(z, EXP_MAX): a rate of e^80 (5.5e34) is beyond any count, and the clip keeps
# exp finite in float32 (whose exp overflows past 88.7) as in float64.
EXP_MAX = 80.0

LOSSES = ("cross_entropy", "binary_cross_entropy", "squared_error", "poisson")
LOSS_CODE = {name: code for code, name in enumerate(LOSSES)}
CROSS_ENTROPY, BINARY_CROSS_ENTROPY, SQUARED_ERROR, POISSON = range(len(LOSSES))

# B8: the output activation each loss is matched with, so that dZ[L] = A[L] - Y. The Poisson
# deviance with its log link (half of it, per output: y log(y / a) - y + a) pairs with a = exp(z).
OUTPUT_LOSS = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy", "identity": "squared_error",
               "exp": "poisson"}
CLASSIFIER_OUTPUTS = frozenset({"softmax", "sigmoid"})
# exp is an output for Poisson rates, not offered for hidden layers (exp of exp overflows by depth 3).
HIDDEN_ACTIVATIONS = tuple(a for a in ACTIVATIONS if a != "exp")

# He initialisation for the ReLU family, Glorot for the rest.
HE_INIT = frozenset({"relu", "leaky_relu", "gelu", "softplus"})

DTYPES = ("float32", "float64")


def activation_code(name):
    if not isinstance(name, str) or name not in ACTIVATION_CODE:
        raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}; got {name!r}")
    return ACTIVATION_CODE[name]


def loss_code(name):
    if not isinstance(name, str) or name not in LOSS_CODE:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)}; got {name!r}")
    return LOSS_CODE[name]

OPTIMIZERS = ("sgd", "adam")
SGD_CODE, ADAM_CODE = range(len(OPTIMIZERS))
# Slots of the float64 hyper-parameter vector the fused step receives. It holds constants only:
# the step count t is an argument of its own, never stored here or changed inside a kernel.
# DP-SGD's noise: its std (noise multiplier x clip norm; 0: none drawn in the step), the key of the
# counter-based generator (an integer below 2^53, exact in float64), and the expected batch size
# that divides the noisy sum under Poisson sampling (0: the batch's own size m).
H_LR, H_MOMENTUM, H_NESTEROV, H_BETA1, H_BETA2, H_EPS, H_WEIGHT_DECAY, H_CLIP, H_NOISE_STD, H_NOISE_KEY, H_MEAN_ROWS = range(11)
N_HYPER = 11


# Marsaglia and Tsang's 256-layer ziggurat: the tail start R and each layer's area V. A draw's layer
# is the low ZIG_BITS bits of a 32-bit half-word, its uniform the rest.
ZIG_BITS = 8
ZIG_LAYERS = 1 << ZIG_BITS
ZIG_R, ZIG_V = 3.6541528853610088, 4.92867323399e-3


def ziggurat_tables(layers=ZIG_LAYERS, r=ZIG_R, v=ZIG_V):
    """Doornik's (2005) ziggurat of ``layers`` equal-area layers under the normal density: the
    layers' right edges ``x`` (layers + 1,), the density at them ``f = exp(-x^2 / 2)``, and the
    ratios ``x[i + 1] / x[i]`` below which a point of layer i lies inside the rectangle under the
    next layer (the fast path)."""
    x = np.empty(layers + 1)
    f = math.exp(-0.5 * r * r)
    x[0], x[1] = v / f, r
    for i in range(2, layers):
        x[i] = math.sqrt(-2.0 * math.log(v / x[i - 1] + f))
        f = math.exp(-0.5 * x[i] * x[i])
    x[layers] = 0.0
    return x, np.exp(-0.5 * x * x), x[1:] / x[:-1]


ZIG_X, ZIG_F, ZIG_RATIO = ziggurat_tables()
# The fast path's two lookups side by side, so that a draw touches one cache line: (x[i], x[i+1] / x[i]).
ZIG_FAST = np.ascontiguousarray(np.stack([ZIG_X[:ZIG_LAYERS], ZIG_RATIO], axis=1))
# SplitMix64's increment (the golden ratio in 64 bits); the scale of 53 bits to (0, 1]; and of a
# half-word's 32 - ZIG_BITS high bits to [-1, 1)
GAMMA = np.uint64(0x9E3779B97F4A7C15)
TO_UNIT = 2.0 ** -53
HALF_SIGNED_UNIT = 2.0 ** -(31 - ZIG_BITS)

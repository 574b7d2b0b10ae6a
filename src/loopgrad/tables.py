"""Names shared by the loop kernels and their NumPy twins.

Activations and losses are chosen by name at the public boundary and by a small
integer code inside compiled code (numba cannot dispatch on strings cheaply).
"""
ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softplus", "gelu", "softmax")
ACTIVATION_CODE = {name: code for code, name in enumerate(ACTIVATIONS)}
IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTPLUS, GELU, SOFTMAX = range(len(ACTIVATIONS))
LEAKY_SLOPE = 0.01

LOSSES = ("cross_entropy", "binary_cross_entropy", "squared_error")
LOSS_CODE = {name: code for code, name in enumerate(LOSSES)}
CROSS_ENTROPY, BINARY_CROSS_ENTROPY, SQUARED_ERROR = range(len(LOSSES))

# B8: the output activation each loss is matched with, so that dZ[L] = A[L] - Y.
OUTPUT_LOSS = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy", "identity": "squared_error"}

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
H_LR, H_MOMENTUM, H_NESTEROV, H_BETA1, H_BETA2, H_EPS, H_WEIGHT_DECAY, H_CLIP = range(8)
N_HYPER = 8

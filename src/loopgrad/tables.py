"""Names and constants shared by the loop kernels and their NumPy twins.

Activations and losses are chosen by name at the public boundary and by a small
integer code inside compiled code (numba cannot dispatch on strings cheaply).
"""
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

# B4 (dA_prev = dZ W^T) of a layer whose rows of W are at most this many bytes long (n_out <= 24 in
# float32, <= 12 in float64: a classifier's output layer) reads a transposed copy of W, made once per
# backward pass, in the outer-product form of F1: the dot form's sums over so few k fall to LLVM's
# scalar remainder loop. On the AVX2 machine, one thread, the copy included, time against the dot
# form at n_out = 10: 0.27-0.38x (float32), 0.58-0.82x (float64); at n_out = 48 (float32) or 20
# (float64) the two are about even, so the line sits below.
B4_TRANSPOSED_BYTES = 96
# Any layer's B4 reads the copy too, from this many rows of a batch on, where W is at most
# B4_TRANSPOSED_MAX_BYTES (so that the copy, O(n_in n_out), stays small beside the product's
# O(m n_in n_out)). On the AVX-512 Xeon, two threads, the copy included, time of the dot form over the
# outer-product form (B4 with ReLU's g'): at m = 512, 1.9x (128 x 64, float32), 1.4x (784 x 128,
# float32), 1.2x (both in float64); at m = 1024, 2.1x and 1.5x in float32; at m = 128 and 256 the
# float64 ones lose (0.75-0.98x), and for a 1024 x 1024 W the copy costs more than the product gains
# (0.5x at m = 512).
# In float32 the copy pays from B4_TRANSPOSED_ROWS_FLOAT32 rows on, since it goes by register tiles
# (``kernels.dense._transpose_into``; before, number by number, it cost 4-13x more): on the Zen 4 guest,
# time of the dot form over the copy and the outer-product form, two threads (one thread), at 64 / 128 /
# 256 rows: 1.33 / 1.45 / 1.57x (1.46 / 1.60 / 1.65x) for a 128 x 64 W, 1.22 / 1.32 / 1.43x (1.29 / 1.36 /
# 1.38x) for 784 x 128, 1.11 / 1.24 / 1.13x (1.05 / 1.16 / 1.17x) for 256 x 256. In float64 the same
# sizes gave 0.86-1.64x, 256 x 256 losing at 64 and 128 rows: it keeps B4_TRANSPOSED_ROWS.
B4_TRANSPOSED_ROWS = 512
B4_TRANSPOSED_ROWS_FLOAT32 = 64
B4_TRANSPOSED_MAX_BYTES = 1 << 20


# A product packs its operands first (``kernels._gemm.nn_packed_rows``) where it has at least
# PACK_MIN_COLS columns of output and PACK_WORK multiply-adds (F1, B2 and B4 alike). Two threads,
# float32, time unpacked / packed (rounds alternating in one process) on the AVX2 machine, after the
# packing's copies became whole-vector moves (nineteenth session): F1 0.83-0.89 at 128x784x256, 1.00-1.06
# at 256x784x256, 0.98-1.02 at 256x512x512, 1.03-1.18 at 512x784x256, 1.09-1.15 at 256x1024x1024; B2
# 0.98 at 128x784x256, 1.16 at 256x784x256, 1.11-1.42 from 512x784x256 up; B4 0.97-1.16 over the same
# sizes. (Before, when the packing cost three times as much, F1 packed only from 2^28.)
PACK_WORK = 1 << 25
PACK_MIN_COLS = 256


def packs(m, K, N):
    """Whether the product C (m, N) = X (m, K) B (K, N) (F1, B2 or B4) takes the packed form."""
    return N >= PACK_MIN_COLS and m * K * N >= PACK_WORK


# B2 (or any product of ``rows`` rows of C summed over K, the rows of its B) reads B's packed panels
# (``kernels._gemm.nn_rows_panels``) from PANELS_MIN_ROWS rows of C and PANELS_MIN_K terms on. Two
# threads, in-process, time over dZ's panels (the packing included) against dZ as stored, medians of
# 30-40 paired rounds (interquartile ranges within +-4%): at 1024 examples 0.88-0.91 (784 x 128 dW), 0.87
# (256 x 128), 0.94 (128 x 64), at 2048 0.89; at 128 and 256 examples 0.85-1.04, at 64 0.97.
PANELS_MIN_ROWS = 128
PANELS_MIN_K = 512


def reads_panels(rows, K):
    """Whether a product (B2) with ``rows`` rows of C, summed over K, reads its B (dZ) packed into panels."""
    return rows >= PANELS_MIN_ROWS and K >= PANELS_MIN_K


# F1 reads W's packed panels from F1_PANELS_MIN_ROWS rows of a batch and PANELS_MIN_K inputs on: two
# threads, in-process, paired rounds, time over W's panels (the packing, a parallel pass of its own,
# included) against W as stored: 0.86 at 1024 x 784 x 128, 0.85 at 512 x 784 x 128, 1.17 at 128 x 784 x
# 128. (Measured first with the packing called from inside the parallel function: 0.96-1.07.)
F1_PANELS_MIN_ROWS = 512


def f1_reads_panels(rows, K):
    """Whether F1 of a batch of ``rows`` rows and K inputs reads W packed into panels."""
    return rows >= F1_PANELS_MIN_ROWS and K >= PANELS_MIN_K


def b4_transposed(n_in, n_out, itemsize, rows):
    """Whether B4 of a layer with W (``n_in``, ``n_out``), in batches of up to ``rows`` examples, reads W^T
    (a copy) rather than W as stored. Not where B4 packs its operands (``packs``): it then packs W^T's
    panels straight from W, and a copy would be made for nothing."""
    if packs(rows, n_out, n_in):
        return False
    if n_out * itemsize <= B4_TRANSPOSED_BYTES:
        return True
    least = B4_TRANSPOSED_ROWS_FLOAT32 if itemsize == 4 else B4_TRANSPOSED_ROWS
    return rows >= least and n_in * n_out * itemsize <= B4_TRANSPOSED_MAX_BYTES


# The k of F1's and B2's sums is taken in chunks of at most this many, so that the rows of X and B a
# chunk reads stay in L1 while the columns of C go by (B2 at batch 1024 on the AVX2 machine: 30 -> 50
# GFLOP/s on one thread). Every product sums its chunks in order, each chunk from zero and then added
# to the sum so far: that fixed order is what lets the fused step split the first layer's sum between
# threads (``k_chunks``) and still give the bits of the product taken whole.
K_CHUNK = 256


def k_chunks(K):
    """How many chunks the sum over k of length ``K`` is cut into, all of one length (the last may be
    shorter): ceil(K / K_CHUNK), rounded up to an even count from 2 on, so that two threads can each take
    half the chunks (784 = 4 x 196 rather than 256 + 256 + 256 + 16)."""
    n = -(-K // K_CHUNK)
    return n + (n & 1) if n > 1 else n


# Up to this batch size the fused step's F1-F3, loss, B8 and B6 run as one pass over blocks of rows;
# above it, layer by layer (``kernels.network``). Measured on the AVX2 machine (784-128-64-10, float32,
# rounds alternating in one process): the pass saves 3-4% of the two-thread step at batch 32, where a
# parallel region's wake-up is a sizeable share, and costs 7-10% on one thread at batch 128 and 1024,
# where carrying a block through every layer pushes the first layer's W out of L2 between blocks.
ROW_PASS_ROWS = 64


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


# DP-SGD's normal deviates: Box and Muller's (1958) transform of one 64-bit word per pair of
# deviates, in float32 arithmetic that a NumPy twin repeats bit for bit (kernels/noise.py).
# The radius sqrt(-2 ln u): u = k 2^-31 from the word's high 31 bits k; where k < 2^RADIUS_FAST_BITS
# (u below 2^-15, a radius beyond 4.56) the slow path extends u with 53 more bits of a second word.
RADIUS_FAST_BITS = 16
# The word's layout: the radius's k is its high 31 bits (the word >> RADIUS_SHIFT), the angle the 24
# bits from ANGLE_SHIFT: 2 of quadrant (angle >> QUADRANT_SHIFT), 22 within the quadrant.
RADIUS_SHIFT, ANGLE_SHIFT, ANGLE_MASK, QUADRANT_SHIFT = 33, 8, (1 << 24) - 1, 22
# float32's bits: 1.0 and sqrt(1/2), the mantissa field, the exponent's bias
FLOAT32_ONE_BITS, FLOAT32_SQRT_HALF_BITS, FLOAT32_MANTISSA, FLOAT32_BIAS = 0x3F800000, 0x3F3504F3, 0x007FFFFF, 127
# ln(1 + f) = f - f^2/2 + f^3 P(f) for f in [sqrt(1/2) - 1, sqrt(2) - 1): P's coefficients, lowest
# first, a least-squares fit in relative error rounded to float32 (within 1.6 ulp of ln(1 + f)).
LOG_POLY = np.array([0.33333972096443176, -0.250009685754776, 0.19960595667362213, -0.16587945818901062,
                     0.14950989186763763, -0.1419750303030014, 0.0850696936249733], np.float32)
# sin and cos on [-pi/4, pi/4]: Taylor's coefficients of x^3..x^9 and x^2..x^10, lowest first (the
# first terms left out lie below 2e-9, under float32's half ulp)
SIN_POLY = np.array([-1 / 6, 1 / 120, -1 / 5040, 1 / 362880], np.float32)
COS_POLY = np.array([-1 / 2, 1 / 24, -1 / 720, 1 / 40320, -1 / 3628800], np.float32)
# SplitMix64's increment (the golden ratio in 64 bits); the scale of 53 bits to (0, 1]
GAMMA = np.uint64(0x9E3779B97F4A7C15)
TO_UNIT = 2.0 ** -53

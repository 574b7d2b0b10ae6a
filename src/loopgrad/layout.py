"""Where each layer's numbers live in the flat buffers (as in llm.c).

Parameters: one contiguous block ``theta``; layer ``l`` holds ``W`` (n_in*n_out,
row-major, so the view is ``(n_in, n_out)``) followed by ``b`` (n_out). The
gradient and optimizer state blocks have the same layout, so an update is one
loop over the block.

Work: for a batch of ``m`` rows, layer ``l`` holds ``Z``, ``A`` and ``dZ``
(each ``m*n_l``), then two vectors of ``m`` (per-example losses, norms), then scratch for the
largest layer's W transposed.
"""
import numpy as np

# columns of the ``layers`` table
N_IN, N_OUT, W_OFF, B_OFF, ACT = range(5)


def layer_table(sizes, codes):
    """int64 (L, 5): n_in, n_out, offset of W, offset of b, activation code."""
    L = len(sizes) - 1
    table = np.zeros((L, 5), dtype=np.int64)
    off = 0
    for l in range(L):
        n_in, n_out = sizes[l], sizes[l + 1]
        table[l] = (n_in, n_out, off, off + n_in * n_out, codes[l])
        off += n_in * n_out + n_out
    return table


def n_params(table):
    last = table[-1]
    return int(last[B_OFF] + last[N_OUT])


def work_size(table, m):
    scratch = int((table[:, N_IN] * table[:, N_OUT]).max())  # one layer's W, transposed
    return int(3 * m * table[:, N_OUT].sum() + 2 * m) + scratch


def decay_mask(table, dtype):
    """1 on weights, 0 on biases: weight decay (L2) never touches a bias."""
    mask = np.zeros(n_params(table), dtype=dtype)
    for n_in, n_out, w_off, _, _ in table:
        mask[w_off:w_off + n_in * n_out] = 1
    return mask


def param_views(theta, table):
    return [(theta[w:w + i * o].reshape(i, o), theta[b:b + o]) for i, o, w, b, _ in table]


def work_views(work, table, m):
    """[(Z, A, dZ)] per layer, each (m, n_l), and the two (m,) vectors."""
    views, o = [], 0
    for n in table[:, N_OUT]:
        views.append(tuple(work[o + k * m * n:o + (k + 1) * m * n].reshape(m, n) for k in range(3)))
        o += 3 * m * n
    return views, work[o:o + m], work[o + m:o + 2 * m]

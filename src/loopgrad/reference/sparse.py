"""The first layer on sparse input in matrix form (twin of ``loopgrad.kernels.sparse``): scipy's CSR products."""
import numpy as np

from .. import _checks


def _matrix(data, indices, indptr, n_in):
    from scipy.sparse import csr_matrix
    return csr_matrix((data, indices, indptr), shape=(indptr.shape[0] - 1, n_in))


def sparse_dense_forward(data, indices, indptr, W, b):
    """F1 for a CSR input: ``Z = A @ W + b``."""
    data, indices, indptr = _checks.csr("A", data, indices, indptr, W.shape[0])
    return np.asarray(_matrix(data, indices, indptr, W.shape[0]) @ W + b, dtype=W.dtype)


def sparse_weight_grad(data, indices, indptr, n_in, dZ):
    """B2 for a CSR input: ``dW = A.T @ dZ / m``."""
    data, indices, indptr = _checks.csr("A", data, indices, indptr, n_in)
    m = indptr.shape[0] - 1
    return np.asarray(_matrix(data, indices, indptr, n_in).T @ dZ / dZ.dtype.type(m), dtype=dZ.dtype)

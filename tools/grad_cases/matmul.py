"""Gemm and MatMul (src/ops/matmul.c), float64 (reference loops; float32 runs through
dnnl_sgemm)."""
from ._common import rng, single_op


def cases():
    r = rng(5)
    out = []

    def x(*shape):
        return r.standard_normal(shape)

    # Gemm: every transA/transB, alpha/beta, C broadcast forms; B and C differentiated or constant
    for ta in (0, 1):
        for tb in (0, 1):
            a = x(3, 4) if ta else x(4, 3)  # M = 4, K = 3
            b = x(5, 3) if tb else x(3, 5)  # N = 5
            out.append(single_op(f"grad_matmul_gemm_t{ta}{tb}", "Gemm",
                                 [("a", a), ("b", b), ("c", x(4, 5))],
                                 attrs={"transA": ta, "transB": tb, "alpha": 0.7, "beta": 1.3}))
    for name, cshape in (("row", (5,)), ("row2d", (1, 5)), ("col", (4, 1)), ("scalar", ()),
                         ("scalar2d", (1, 1))):
        out.append(single_op(f"grad_matmul_gemm_c_{name}", "Gemm",
                             [("a", x(4, 3)), ("b", x(3, 5)), ("c", r.standard_normal(cshape))],
                             attrs={"beta": 0.5}))
    out += [
        # the usual Linear layer: B (weights) and C (bias) constant, only A differentiated
        single_op("grad_matmul_gemm_linear", "Gemm", [("a", x(6, 8))],
                  consts={"w": x(5, 8), "bias": x(5)}, attrs={"transB": 1}),
        single_op("grad_matmul_gemm_noc", "Gemm", [("a", x(4, 3)), ("b", x(3, 2))],
                  attrs={"alpha": 2.0}),
        single_op("grad_matmul_gemm_a_only_c_const", "Gemm", [("a", x(3, 4))],
                  consts={"b": x(3, 5), "c": x(1, 5)}, attrs={"transA": 1, "beta": 2.0}),
        single_op("grad_matmul_gemm_big", "Gemm", [("a", x(70, 60)), ("b", x(60, 80))],
                  consts={"c": x(80)}),
    ]

    # MatMul
    out += [
        single_op("grad_matmul_mm_2d", "MatMul", [("a", x(4, 3)), ("b", x(3, 5))]),
        single_op("grad_matmul_mm_batched", "MatMul", [("a", x(2, 3, 4, 3)), ("b", x(2, 3, 3, 5))]),
        # B shared across the batch (folded path), then B constant
        single_op("grad_matmul_mm_fold", "MatMul", [("a", x(2, 3, 4)), ("b", x(4, 5))]),
        single_op("grad_matmul_mm_fold_bconst", "MatMul", [("a", x(2, 3, 4))],
                  consts={"b": x(4, 5)}),
        # A shared across B's batch
        single_op("grad_matmul_mm_a_bcast", "MatMul", [("a", x(3, 4)), ("b", x(2, 4, 5))]),
        # broadcast batch dims of size 1 on both sides
        single_op("grad_matmul_mm_bcast_both", "MatMul",
                  [("a", x(2, 1, 3, 4)), ("b", x(1, 3, 4, 2))]),
        single_op("grad_matmul_mm_bcast_rank", "MatMul", [("a", x(3, 2, 4)), ("b", x(2, 1, 4, 3))]),
        # 1-D promotions
        single_op("grad_matmul_mm_vec_mat", "MatMul", [("a", x(4)), ("b", x(4, 3))]),
        single_op("grad_matmul_mm_mat_vec", "MatMul", [("a", x(3, 4)), ("b", x(4))]),
        single_op("grad_matmul_mm_vec_vec", "MatMul", [("a", x(5)), ("b", x(5))]),
        single_op("grad_matmul_mm_vec_batched", "MatMul", [("a", x(4)), ("b", x(2, 3, 4, 2))]),
        single_op("grad_matmul_mm_batched_vec", "MatMul", [("a", x(2, 3, 4)), ("b", x(4))]),
        # large products (sequential multi-threaded gemms) and many small ones (one per thread)
        single_op("grad_matmul_mm_big", "MatMul", [("a", x(2, 70, 65)), ("b", x(2, 65, 72))]),
        single_op("grad_matmul_mm_big_bcast", "MatMul", [("a", x(70, 65)), ("b", x(3, 65, 72))]),
        single_op("grad_matmul_mm_many_small", "MatMul",
                  [("a", x(8, 1, 3, 4)), ("b", x(8, 6, 4, 2))]),
    ]
    return out

// Single-precision GEMM interface shared by every ISA. Row-major storage with
// leading dimensions; kernels trust their arguments (the glue validates).
#pragma once
#include <cstdint>

namespace bnkit {

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
// op(A) = A^T when transA (A stored [K, lda >= M]), else A stored [M, lda >= K];
// op(B) = B^T when transB (B stored [N, ldb >= K]), else B stored [K, ldb >= N].
// beta == 0 never reads C (NaN in C is ignored). Threads split the output only,
// so every element sees the same summation order for any thread count.
struct GemmArgs {
  bool transA = false, transB = false;
  int64_t M = 0, N = 0, K = 0;
  float alpha = 1.0f, beta = 0.0f;
  const float* A = nullptr;
  int64_t lda = 0;
  const float* B = nullptr;
  int64_t ldb = 0;
  float* C = nullptr;
  int64_t ldc = 0;
  // Optional epilogue, added once: rowBias[i] to row i, colBias[j] to column j.
  const float* rowBias = nullptr;
  const float* colBias = nullptr;
};

struct GemmKernels {
  void (*sgemm)(const GemmArgs& args);
  // count independent products (outputs must not overlap) in one parallel
  // pass; each result is bit-identical to sgemm's.
  void (*sgemmBatch)(const GemmArgs* args, int count);
  // Register tile of the microkernel, for tests and benchmarks.
  int mr, nr;
};

extern const GemmKernels kGemmScalar;
extern const GemmKernels kGemmAvx2;
extern const GemmKernels kGemmAvx512;
extern const GemmKernels kGemmNeon;

}  // namespace bnkit

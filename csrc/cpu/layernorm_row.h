// LayerNorm of one output row made of pieces, shared by the CPU kernels that fuse a
// gather with LayerNorm (spatial_compress, merge_compress). A row of D = n * C values
// is n pieces of C contiguous values each, read where they lie: a source token, an
// area average staged by the kernel, or a zero token for padding. Nothing is staged
// as fp32: each piece is read twice, once for the statistics (from memory) and once
// for the normalized write (from L1/L2, a row's pieces being read just before).
//
// Statistics, one pass: the sums of d = x - pivot and of d^2, in fp32 per block of at
// most kBlock values of a piece (four vector accumulators), blocks added in double; the
// mean is pivot + sum(d) / D and the sum of squared deviations sum(d^2) - sum(d)^2 / D.
// The pivot is the mean of the row's first kBlock values (found the same way about
// the first value), so |pivot - mean| <= sqrt(D / kBlock) * std and the cancellation
// costs at most a factor 1 + D / kBlock on the fp32 rounding of the variance (55 at
// NVILA-8B's D = 13824: ~3e-6 relative, against bf16's 4e-3); nearly constant rows
// and long runs of zero padding stay exact as in nvila/layernorm.h's shifted data
// (the pivot plays the shift there: RowStats.shift).
// Write: y = ((x - shift) * rstd - mean * rstd) * w + b, the last two steps fused
// (torch's CPU LayerNorm computes x * rstd - mean * rstd the same way, without the shift).
//
// AVX2 path (avx2.h, chosen at run time) and a portable one. bf16 rows are read 16
// values at a time as their even and odd halves (one 256-bit load, an and and a shift),
// so the weight and bias are kept in that order per 16 values (prepared once per call).
#pragma once

#include <cstdint>
#include <vector>

#include "nvila/layernorm.h"

namespace nvila::cpu {

constexpr int64_t kBlock = 256;

template <typename T>
class PieceRowNorm {
 public:
  // w (D values) and b (D values, or nullptr) are fp32; pieces are C values.
  PieceRowNorm(const float* w, const float* b, int64_t D, int64_t C, float eps);

  // Normalizes the row whose D / C pieces are at p[0], p[1], ... into dst (D values),
  // with streaming stores when `stream`.
  void operator()(T* dst, const T* const* p, bool stream) const;

 private:
  // s1 += sum of (x - pivot), s2 += sum of (x - pivot)^2 over m values at p
  void block_sums(const T* p, int64_t m, float pivot, double& s1, double& s2) const;

  int64_t D_, C_;
  float eps_;
  std::vector<float> w_, b_;  // per piece: each full group of 16 as evens then odds (bf16 with AVX2)
  bool params_finite_;        // every w and b finite: no NaN can come from them
  bool avx2_;
};

}  // namespace nvila::cpu

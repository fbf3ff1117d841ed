// CPU kernels of the FP8 ops: per-tensor quantization and the scaled E4M3 GEMM.
//
// fp8_quantize: one parallel pass for the amax of the finite |x| (integer max of the
// magnitude bits: for non-negative IEEE values the bit order is the value order), then
// one parallel pass q = encode(saturate(x / scale)) with a true division, bit-exact with
// reference.fp8_quantize.
//
// fp8_gemm, out = (a @ b^T) * (scale_a * scale_b) + bias with fp32 accumulation:
// - decode path (M <= kDecodeMaxM, the LLM decode step): the FP8 weights b are
//   streamed exactly once. Threads own blocks of weight rows; each row is decoded
//   32 codes at a time in registers (E4M3 -> fp16 bits with shifts, then F16C) and
//   dotted with all M rows of a (pre-decoded to fp32). Memory-bound by design.
// - blocked path (larger M): per K-slice of kKc, the slice of b is decoded into
//   fp32 panels of kNr columns (shared, in L3) and each thread decodes blocks of
//   kMc rows of a (its L2); a kMr x kNr register-blocked fp32 FMA micro-kernel
//   accumulates into fp32, and the last K-slice applies scale, bias and the cast.
// - bf16 path (larger M on a CPU with AVX512-BF16, chosen at run time): the blocked
//   path's loops with both operands packed as bf16 pairs (every E4M3 value is exact in
//   bf16) and a VDPBF16PS micro-kernel, whose products are exact in fp32 and summed in
//   fp32: the same sums up to order, at twice the fp32 FMA rate, so FP8 prefill is
//   faster than fp32 torch.matmul. On such CPUs the decode path also decodes the weights
//   to bf16 (two word permutes per 32 codes) and dots them with VDPBF16PS: fewer
//   instructions per weight byte than the F16C decode, closer to the streaming bound.
//   NVILA_KERNELS_CPU_ISA=avx2 keeps the AVX2 paths.
// Both have an AVX2+FMA+F16C version (function-level target attributes, chosen at
// run time with __builtin_cpu_supports, so the build stays portable) and a portable
// fallback. NVILA_KERNELS_CPU_ISA=generic forces the fallback (for its tests).
#include "nvila/fp8.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "avx2.h"
#include "nvila/dtype.h"
#include "nvila/fp8_ops.h"

namespace nvila::cpu {
namespace {

// ============================== fp8_quantize ==============================

// Key of |x| for the amax: the magnitude bits of a finite value, 0 for NaN / inf.
// Non-negative and ordered like the values, so an integer max is the float max.
NVILA_INLINE int32_t finite_abs_key(float v) {
  const int32_t a = int32_t(float_bits(v) & 0x7fffffffu);
  return a < 0x7f800000 ? a : 0;
}
NVILA_INLINE int16_t finite_abs_key(bf16_t v) {
  const int16_t a = int16_t(v.bits & 0x7fffu);
  return a < 0x7f80 ? a : int16_t(0);
}
NVILA_INLINE int16_t finite_abs_key(half_t v) {
  const int16_t a = int16_t(v.bits & 0x7fffu);
  return a < 0x7c00 ? a : int16_t(0);
}
float key_value(int32_t k, const float*) { return bits_float(uint32_t(k)); }
float key_value(int32_t k, const bf16_t*) { return bits_float(uint32_t(k) << 16); }
float key_value(int32_t k, const half_t*) { return to_float(half_t{uint16_t(k)}); }

template <typename T>
NVILA_INLINE int32_t amax_key_body(const T* x, int64_t n) {
  using K = decltype(finite_abs_key(x[0]));
  K m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, finite_abs_key(x[i]));
  return m;
}
template <typename T>
int32_t amax_key_generic(const T* x, int64_t n) {
  return amax_key_body(x, n);
}
#if NVILA_HAVE_AVX2_PATH
template <typename T>
NVILA_AVX2 int32_t amax_key_avx2(const T* x, int64_t n) {
  return amax_key_body(x, n);
}
#endif

constexpr int64_t kQuantChunk = 1 << 15;  // elements per parallel work item (a multiple of 32)

template <typename T>
float finite_amax(const T* x, int64_t n) {
  const bool avx2 = use_avx2();
  int32_t m = 0;
#pragma omp parallel for schedule(static) reduction(max : m) if (n > kQuantChunk)
  for (int64_t c = 0; c < n; c += kQuantChunk) {
    const int64_t len = std::min(kQuantChunk, n - c);
#if NVILA_HAVE_AVX2_PATH
    const int32_t k = avx2 ? amax_key_avx2(x + c, len) : amax_key_generic(x + c, len);
#else
    const int32_t k = amax_key_generic(x + c, len);
#endif
    m = std::max(m, k);
  }
  return key_value(m, x);
}

// torch encodes NaN as sign | 0x7f in both formats (fp8_encode writes 0x7e for E5M2)
constexpr uint8_t kNanCode = 0x7f;

template <Fp8Format F>
NVILA_INLINE uint8_t quantize_one(float v) {
  if (v != v) return uint8_t((float_bits(v) >> 24) & 0x80u) | kNanCode;
  return fp8_encode<F>(fp8_saturate<F>(v));
}

template <Fp8Format F, typename T>
void quantize_generic(const T* x, uint8_t* q, int64_t n, float scale) {
  for (int64_t i = 0; i < n; ++i) q[i] = quantize_one<F>(load_f32(x + i) / scale);
}

#if NVILA_HAVE_AVX2_PATH
// fp8_saturate + fp8_encode of 8 lanes (same arithmetic, selects for the branches);
// the codes come back in the low byte of each 32-bit lane.
template <Fp8Format F>
NVILA_AVX2 NVILA_INLINE __m256i encode8(__m256 v) {
  constexpr int M = Fp8Traits<F>::kMan, B = Fp8Traits<F>::kBias;
  constexpr float kMax = Fp8Traits<F>::kMax;
  // max(-m, v) and min(m, v) return v when v is NaN (the second operand), like fp8_saturate
  v = _mm256_min_ps(_mm256_set1_ps(kMax), _mm256_max_ps(_mm256_set1_ps(-kMax), v));
  const __m256i u = _mm256_castps_si256(v);
  const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), _mm256_set1_epi32(0x80));
  const __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
  // normal: round to nearest even at the M-th mantissa bit, rebias
  __m256i r = _mm256_add_epi32(a, _mm256_set1_epi32((1 << (22 - M)) - 1));
  r = _mm256_add_epi32(r, _mm256_and_si256(_mm256_srli_epi32(a, 23 - M), _mm256_set1_epi32(1)));
  r = _mm256_sub_epi32(r, _mm256_set1_epi32(int32_t(uint32_t(127 - B) << 23)));
  const __m256i qn = _mm256_srli_epi32(r, 23 - M);
  // subnormal: the FPU rounds |v| * 2^(B-1+M) at the units place
  const __m256 scaled = _mm256_mul_ps(_mm256_castsi256_ps(a), _mm256_set1_ps(float(1 << (B - 1 + M))));
  const __m256i qs = _mm256_sub_epi32(_mm256_castps_si256(_mm256_add_ps(scaled, _mm256_set1_ps(8388608.0f))),
                                      _mm256_set1_epi32(0x4b000000));
  const __m256i is_sub = _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(uint32_t(127 + 1 - B) << 23)), a);
  const __m256i is_nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000));
  __m256i q = _mm256_blendv_epi8(qn, qs, is_sub);
  q = _mm256_blendv_epi8(q, _mm256_set1_epi32(kNanCode), is_nan);
  return _mm256_or_si256(q, sign);
}

template <Fp8Format F, typename T>
NVILA_AVX2 void quantize_avx2(const T* x, uint8_t* q, int64_t n, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i q0 = encode8<F>(_mm256_div_ps(load8(x + i), s));
    const __m256i q1 = encode8<F>(_mm256_div_ps(load8(x + i + 8), s));
    const __m256i q2 = encode8<F>(_mm256_div_ps(load8(x + i + 16), s));
    const __m256i q3 = encode8<F>(_mm256_div_ps(load8(x + i + 24), s));
    // 32 -> 16 -> 8 bits (in-lane packs), then undo the lane interleave
    const __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(q0, q1), _mm256_packus_epi32(q2, q3));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_permutevar8x32_epi32(p, order));
  }
  quantize_generic<F>(x + i, q + i, n - i, scale);
}
#endif

template <Fp8Format F, typename T>
void quantize(const Fp8QuantizeArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  const int64_t n = a.n;
  const float scale = a.scale ? *a.scale : fp8_dynamic_scale(finite_amax(x, n), F);
  *a.scale_out = scale;
  const bool avx2 = use_avx2();
#pragma omp parallel for schedule(static) if (n > kQuantChunk)
  for (int64_t c = 0; c < n; c += kQuantChunk) {
    const int64_t len = std::min(kQuantChunk, n - c);
#if NVILA_HAVE_AVX2_PATH
    if (avx2) {
      quantize_avx2<F>(x + c, a.q + c, len, scale);
      continue;
    }
#endif
    quantize_generic<F>(x + c, a.q + c, len, scale);
  }
}

template <Fp8Format F>
void quantize_dtype(const Fp8QuantizeArgs& a) {
  return dispatch_dtype(a.dtype, [&](auto t) { return quantize<F, decltype(t)>(a); });
}

// ================================ fp8_gemm ================================

// Exact fp32 values of the 256 E4M3 codes (NaN codes decode to NaN).
const float* e4m3_table() {
  static const auto table = [] {
    std::unique_ptr<float[]> t(new float[256]);
    for (int i = 0; i < 256; ++i) t[i] = fp8_decode<Fp8Format::E4M3>(uint8_t(i));
    return t;
  }();
  return table.get();
}

NVILA_INLINE bool e4m3_is_nan(uint8_t c) { return (c & 0x7fu) == 0x7fu; }

// out[m, n] = acc * s + bias[n], cast to T (the epilogue shared by both paths).
struct Epilogue {
  void* out;
  DType dtype;
  int64_t ldo;
  float s;
  const float* bias;
};

template <typename T>
NVILA_INLINE void store_out(const Epilogue& e, int64_t m, int64_t n, float acc) {
  float y = acc * e.s;
  if (e.bias) y = y + e.bias[n];
  static_cast<T*>(e.out)[m * e.ldo + n] = from_f32<T>(y);
}
NVILA_INLINE void store_out(const Epilogue& e, int64_t m, int64_t n, float acc) {
  switch (e.dtype) {
    case DType::F32: return store_out<float>(e, m, n, acc);
    case DType::F16: return store_out<half_t>(e, m, n, acc);
    case DType::BF16: return store_out<bf16_t>(e, m, n, acc);
  }
}

// ---- decode path ----------------------------------------------------------

constexpr int64_t kDecodeMaxM = 16;
constexpr int kDecodeGroup = 8;  // rows of a dotted with one decoded weight chunk

// sum_k af[m, k] * w[k] for the m < mb rows of af (row stride lda), exact decode of w.
void dot_rows_generic(const uint8_t* w, const float* af, int64_t lda, int64_t K, int mb, float* res) {
  const float* lut = e4m3_table();
  constexpr int64_t kChunk = 256;
  float wf[kChunk];
  for (int m = 0; m < mb; ++m) res[m] = 0.f;
  for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
    const int64_t len = std::min(kChunk, K - k0);
    for (int64_t k = 0; k < len; ++k) wf[k] = lut[w[k0 + k]];
    for (int m = 0; m < mb; ++m) {
      const float* ap = af + m * lda + k0;
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < len; ++k) s += ap[k] * wf[k];
      res[m] += s;
    }
  }
}

#if NVILA_HAVE_AVX2_PATH
// As dot_rows_generic for MB rows of af and NB weight rows (stride ldw) at once:
// res[j * ldr + m] = sum_k af[m, k] * w_j[k]. Several weight rows share each load of
// af, and MB * NB * NA independent accumulators keep enough FMA chains in flight.
// pf: where the next work item's rows start (prefetched at the offsets read here:
// the hardware prefetchers ramp up slowly on short rows).
// Returns false when a weight row holds a NaN code (the register decode has no NaN;
// the caller then uses the exact generic path).
// Decode: a code c placed in the high byte of a 16-bit lane and shifted right
// arithmetically by one is the fp16 with c's sign, exponent and mantissa bits
// (after clearing the duplicated sign at bit 14): the E4M3 value times 2^-8 (the
// exponent biases are 15 and 7), subnormals included. F16C widens it to fp32
// exactly; the sums are scaled back by 2^8 (exact) at the end.
template <int MB, int NB>
NVILA_AVX2 bool dot_block_avx2(const uint8_t* w, int64_t ldw, const float* af, int64_t lda, int64_t K, float* res,
                               int64_t ldr, const uint8_t* pf) {
  constexpr int P = MB * NB;
  constexpr int NA = P <= 2 ? 4 : (P <= 6 ? 2 : 1);
  __m256 acc[NB][MB][NA];
  for (int j = 0; j < NB; ++j)
    for (int m = 0; m < MB; ++m)
      for (int i = 0; i < NA; ++i) acc[j][m][i] = _mm256_setzero_ps();
  const __m256i zero = _mm256_setzero_si256();
  const __m256i low7 = _mm256_set1_epi8(0x7f);
  const __m256i clear14 = _mm256_set1_epi16(int16_t(0xbfff));
  __m256i nan = zero;
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    for (int j = 0; j < NB; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(pf + j * ldw + k), _MM_HINT_T0);
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * ldw + k));
      nan = _mm256_or_si256(nan, _mm256_cmpeq_epi8(_mm256_and_si256(x, low7), low7));
      // per 128-bit lane: lo holds codes 0..7 (and 16..23), hi codes 8..15 (and 24..31)
      const __m256i lo = _mm256_and_si256(_mm256_srai_epi16(_mm256_unpacklo_epi8(zero, x), 1), clear14);
      const __m256i hi = _mm256_and_si256(_mm256_srai_epi16(_mm256_unpackhi_epi8(zero, x), 1), clear14);
      const __m256 w0 = _mm256_cvtph_ps(_mm256_castsi256_si128(lo));
      const __m256 w1 = _mm256_cvtph_ps(_mm256_castsi256_si128(hi));
      const __m256 w2 = _mm256_cvtph_ps(_mm256_extracti128_si256(lo, 1));
      const __m256 w3 = _mm256_cvtph_ps(_mm256_extracti128_si256(hi, 1));
      for (int m = 0; m < MB; ++m) {
        const float* ap = af + m * lda + k;
        __m256* c = acc[j][m];
        c[0 % NA] = _mm256_fmadd_ps(_mm256_loadu_ps(ap), w0, c[0 % NA]);
        c[1 % NA] = _mm256_fmadd_ps(_mm256_loadu_ps(ap + 8), w1, c[1 % NA]);
        c[2 % NA] = _mm256_fmadd_ps(_mm256_loadu_ps(ap + 16), w2, c[2 % NA]);
        c[3 % NA] = _mm256_fmadd_ps(_mm256_loadu_ps(ap + 24), w3, c[3 % NA]);
      }
    }
  }
  if (!_mm256_testz_si256(nan, nan)) return false;
  const float* lut = e4m3_table();
  for (int j = 0; j < NB; ++j) {
    const uint8_t* wj = w + j * ldw;
    for (int64_t kk = k; kk < K; ++kk)
      if (e4m3_is_nan(wj[kk])) return false;
    for (int m = 0; m < MB; ++m) {
      __m256 s = acc[j][m][0];
      for (int i = 1; i < NA; ++i) s = _mm256_add_ps(s, acc[j][m][i]);
      float tail = 0.f;
      const float* ap = af + m * lda;
      for (int64_t kk = k; kk < K; ++kk) tail += ap[kk] * lut[wj[kk]];
      res[j * ldr + m] = hsum(s) * 256.0f + tail;
    }
  }
  return true;
}

// Weight rows per dot_block_avx2 call for a group of mb rows of a.
constexpr int decode_rows_per_call(int mb) { return mb == 1 ? 4 : (mb <= 4 ? 2 : 1); }

template <int MB>
NVILA_AVX2 bool dot_block_avx2(const uint8_t* w, int64_t ldw, const float* af, int64_t lda, int64_t K, int nb,
                               float* res, int64_t ldr, const uint8_t* pf) {
  constexpr int NB = decode_rows_per_call(MB);
  if (nb == NB) return dot_block_avx2<MB, NB>(w, ldw, af, lda, K, res, ldr, pf);
  return dot_block_avx2<MB, 1>(w, ldw, af, lda, K, res, ldr, pf);
}

// dot_block_avx2 for mb <= kDecodeGroup rows of a and nb = decode_rows_per_call(mb) or 1 weight rows.
NVILA_AVX2 bool dot_block_avx2(const uint8_t* w, int64_t ldw, const float* af, int64_t lda, int64_t K, int mb, int nb,
                               float* res, int64_t ldr, const uint8_t* pf) {
  switch (mb) {
    case 1: return dot_block_avx2<1>(w, ldw, af, lda, K, nb, res, ldr, pf);
    case 2: return dot_block_avx2<2>(w, ldw, af, lda, K, nb, res, ldr, pf);
    case 3: return dot_block_avx2<3>(w, ldw, af, lda, K, nb, res, ldr, pf);
    case 4: return dot_block_avx2<4>(w, ldw, af, lda, K, nb, res, ldr, pf);
    case 5: return dot_block_avx2<5>(w, ldw, af, lda, K, nb, res, ldr, pf);
    case 6: return dot_block_avx2<6>(w, ldw, af, lda, K, nb, res, ldr, pf);
    case 7: return dot_block_avx2<7>(w, ldw, af, lda, K, nb, res, ldr, pf);
    default: return dot_block_avx2<8>(w, ldw, af, lda, K, nb, res, ldr, pf);
  }
}
#endif

#if NVILA_HAVE_AVX2_PATH
#define NVILA_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))

// True when the CPU has AVX512F/BW/BF16 and NVILA_KERNELS_CPU_ISA is neither "generic"
// nor "avx2" (which keep the AVX2 decode and fp32 blocked paths, for their tests).
bool use_avx512bf16() {
  static const bool ok = [] {
    const char* isa = std::getenv("NVILA_KERNELS_CPU_ISA");
    if (isa && (std::strcmp(isa, "generic") == 0 || std::strcmp(isa, "avx2") == 0)) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16");
  }();
  return ok;
}

// bf16 bits of the 256 E4M3 codes: exact (the values have 3 mantissa bits and fit
// bf16's exponent range), NaN codes decode to a bf16 NaN.
const uint16_t* e4m3_bf16_table() {
  static const auto table = [] {
    std::unique_ptr<uint16_t[]> t(new uint16_t[256]);
    for (int i = 0; i < 256; ++i) t[i] = uint16_t(float_bits(fp8_decode<Fp8Format::E4M3>(uint8_t(i))) >> 16);
    return t;
  }();
  return table.get();
}

// The sum of the 16 lanes, through memory (GCC 12's 512-bit extract and cast intrinsics
// warn of uninitialized values); once per dot product.
NVILA_AVX512BF16 NVILA_INLINE float hsum512(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float s = 0.f;
  for (int i = 0; i < 16; ++i) s += t[i];
  return s;
}

// As dot_block_avx2 (MB rows of a, NB weight rows, res[j * ldr + m]), with VDPBF16PS:
// a16 holds the rows of a as bf16 (exact), zero-padded to a multiple of 32 columns; each
// 32 weight codes become 32 bf16 with two 64-entry word permutes (the table of the 128
// magnitudes) and the sign bit, so NaN codes decode to NaN and need no separate check.
// The products are exact in fp32 and summed in fp32, as in the bf16 GEMM path.
template <int MB, int NB>
NVILA_AVX512BF16 void dot_block_bf16(const uint8_t* w, int64_t ldw, const uint16_t* a16, int64_t lda16, int64_t K,
                                     float* res, int64_t ldr, const uint8_t* pf) {
  const uint16_t* tab = e4m3_bf16_table();  // codes 0..127: the magnitudes
  const __m512i t0 = _mm512_loadu_si512(tab), t1 = _mm512_loadu_si512(tab + 32);
  const __m512i t2 = _mm512_loadu_si512(tab + 64), t3 = _mm512_loadu_si512(tab + 96);
  const __m512i bit6 = _mm512_set1_epi16(0x40), sign = _mm512_set1_epi16(int16_t(0x8000));
  __m512 acc[NB][MB];
  for (int j = 0; j < NB; ++j)
    for (int m = 0; m < MB; ++m) acc[j][m] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    const __mmask32 valid = K - k >= 32 ? ~__mmask32(0) : (__mmask32(1) << (K - k)) - 1;
    for (int j = 0; j < NB; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(pf + j * ldw + k), _MM_HINT_T0);
      const __m512i c = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(valid, w + j * ldw + k));  // 0x00cc
      const __m512i lo = _mm512_permutex2var_epi16(t0, c, t1), hi = _mm512_permutex2var_epi16(t2, c, t3);
      __m512i v = _mm512_mask_blend_epi16(_mm512_test_epi16_mask(c, bit6), lo, hi);
      v = _mm512_ternarylogic_epi32(v, _mm512_slli_epi16(c, 8), sign, 0xf8);  // v | (c << 8 & 0x8000)
      for (int m = 0; m < MB; ++m)
        acc[j][m] = _mm512_dpbf16_ps(acc[j][m], (__m512bh)v, (__m512bh)_mm512_loadu_si512(a16 + m * lda16 + k));
    }
  }
  for (int j = 0; j < NB; ++j)
    for (int m = 0; m < MB; ++m) res[j * ldr + m] = hsum512(acc[j][m]);
}

template <int MB>
NVILA_AVX512BF16 void dot_block_bf16(const uint8_t* w, int64_t ldw, const uint16_t* a16, int64_t lda16, int64_t K,
                                     int nb, float* res, int64_t ldr, const uint8_t* pf) {
  constexpr int NB = decode_rows_per_call(MB);
  if (nb == NB) return dot_block_bf16<MB, NB>(w, ldw, a16, lda16, K, res, ldr, pf);
  dot_block_bf16<MB, 1>(w, ldw, a16, lda16, K, res, ldr, pf);
}

// dot_block_bf16 for mb <= kDecodeGroup rows of a and nb = decode_rows_per_call(mb) or 1 weight rows.
NVILA_AVX512BF16 void dot_block_bf16(const uint8_t* w, int64_t ldw, const uint16_t* a16, int64_t lda16, int64_t K,
                                     int mb, int nb, float* res, int64_t ldr, const uint8_t* pf) {
  switch (mb) {
    case 1: return dot_block_bf16<1>(w, ldw, a16, lda16, K, nb, res, ldr, pf);
    case 2: return dot_block_bf16<2>(w, ldw, a16, lda16, K, nb, res, ldr, pf);
    case 3: return dot_block_bf16<3>(w, ldw, a16, lda16, K, nb, res, ldr, pf);
    case 4: return dot_block_bf16<4>(w, ldw, a16, lda16, K, nb, res, ldr, pf);
    case 5: return dot_block_bf16<5>(w, ldw, a16, lda16, K, nb, res, ldr, pf);
    case 6: return dot_block_bf16<6>(w, ldw, a16, lda16, K, nb, res, ldr, pf);
    case 7: return dot_block_bf16<7>(w, ldw, a16, lda16, K, nb, res, ldr, pf);
    default: return dot_block_bf16<8>(w, ldw, a16, lda16, K, nb, res, ldr, pf);
  }
}
#endif

void gemm_decode(const Fp8GemmArgs& g, const Epilogue& e) {
  const int64_t M = g.M, N = g.N, K = g.K;
#if NVILA_HAVE_AVX2_PATH
  const bool bf16 = use_avx512bf16();
#else
  const bool bf16 = false;
#endif
  const int64_t k16 = ceil_div(K, 32) * 32;       // row stride of a16
  std::vector<uint16_t> a16(bf16 ? M * k16 : 0);  // (M, k16) a as bf16, zero-padded (bf16 kernel)
  std::vector<float> af(bf16 ? 0 : M * K);        // (M, K) a decoded to fp32 (the other kernels)
  const uint16_t* lut16 = bf16 ? e4m3_bf16_table() : nullptr;
  for (int64_t m = 0; m < M && bf16; ++m)
    for (int64_t k = 0; k < K; ++k) a16[m * k16 + k] = lut16[g.a[m * K + k]];
  const float* lut = e4m3_table();
  for (int64_t i = 0; i < int64_t(af.size()); ++i) af[i] = lut[g.a[i]];
  const bool avx2 = use_avx2();
  // groups of rows of a: as even as possible, at most kDecodeGroup each
  const int64_t groups = ceil_div(M, kDecodeGroup);
  constexpr int64_t kRows = 4;  // weight rows per work item (a multiple of every decode_rows_per_call)
  const bool parallel = N * K >= (int64_t(1) << 16);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t n0 = 0; n0 < N; n0 += kRows) {
    const int64_t rows = std::min(kRows, N - n0);
    float res[kRows][kDecodeMaxM];  // (row, m)
    for (int64_t gi = 0; gi < groups; ++gi) {
      const int64_t m0 = gi * M / groups, mb = (gi + 1) * M / groups - m0;
      const int64_t step = rows == kRows ? decode_rows_per_call(int(mb)) : 1;
      for (int64_t r = 0; r < rows; r += step) {
        const uint8_t* w = g.b + (n0 + r) * K;
        const uint8_t* pf = n0 + kRows + r < N ? w + kRows * K : w;  // the next work item's rows
#if NVILA_HAVE_AVX2_PATH
        if (bf16) {
          dot_block_bf16(w, K, a16.data() + m0 * k16, k16, K, int(mb), int(step), &res[r][m0], kDecodeMaxM, pf);
          continue;
        }
        if (avx2 && dot_block_avx2(w, K, af.data() + m0 * K, K, K, int(mb), int(step), &res[r][m0], kDecodeMaxM, pf))
          continue;
#endif
        const float* ap = af.data() + m0 * K;
        for (int64_t j = 0; j < step; ++j) dot_rows_generic(w + j * K, ap, K, K, int(mb), &res[r + j][m0]);
      }
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t m = 0; m < M; ++m) store_out(e, m, n0 + r, res[r][m]);
  }
}

// ---- blocked path ---------------------------------------------------------

constexpr int kMr = 6, kNr = 16;  // micro-tile: 12 ymm accumulators
constexpr int64_t kKc = 256;      // K slice: a kKc x kNr fp32 panel of b is 16 KB (L1)
constexpr int64_t kMc = 96;       // rows of a per block: kMc x kKc fp32 is 96 KB (L2)
constexpr int64_t kNc = 512;      // columns per parallel work item

// Packs rows [r0, r0 + rows) of the (R, K) codes, K range [k0, k0 + kc), as one fp32
// panel of P rows: [k][P] (zero rows past the end).
template <int P>
NVILA_INLINE void pack_panel_body(const uint8_t* src, int64_t K, int64_t r0, int64_t rows, int64_t k0, int64_t kc,
                                  float* d) {
  const float* lut = e4m3_table();
  const uint8_t* s[P];
  for (int i = 0; i < P; ++i) s[i] = src + (r0 + std::min<int64_t>(i, rows - 1)) * K + k0;
  for (int64_t k = 0; k < kc; ++k)
    for (int i = 0; i < P; ++i) d[k * P + i] = i < rows ? lut[s[i][k]] : 0.f;
}

template <int P>
void pack_panel_generic(const uint8_t* src, int64_t K, int64_t r0, int64_t rows, int64_t k0, int64_t kc, float* d) {
  pack_panel_body<P>(src, K, r0, rows, k0, kc, d);
}

// The tile epilogue: accumulate the micro-tile into the fp32 accumulator (slices
// before the last) or apply scale, bias and the cast to the output (the last).
template <typename T, int NR = kNr>
NVILA_INLINE void finish_tile_body(const float* tile, int64_t mr, int64_t nr, float* cacc, int64_t ldc, bool first,
                                   bool last, const Epilogue& e, int64_t row0, int64_t col0) {
  for (int64_t i = 0; i < mr; ++i) {
    const float* tr = tile + i * NR;
    float* cr = cacc ? cacc + (row0 + i) * ldc + col0 : nullptr;
    if (!last) {
      if (first)
        for (int64_t j = 0; j < nr; ++j) cr[j] = tr[j];
      else
        for (int64_t j = 0; j < nr; ++j) cr[j] += tr[j];
      continue;
    }
    T* o = static_cast<T*>(e.out) + (row0 + i) * e.ldo + col0;
    float v[NR];
    if (first)
      for (int64_t j = 0; j < nr; ++j) v[j] = tr[j] * e.s;
    else
      for (int64_t j = 0; j < nr; ++j) v[j] = (cr[j] + tr[j]) * e.s;
    if (e.bias)
      for (int64_t j = 0; j < nr; ++j) v[j] = v[j] + e.bias[col0 + j];
    for (int64_t j = 0; j < nr; ++j) o[j] = from_f32<T>(v[j]);
  }
}

template <typename T>
void finish_tile_generic(const float* tile, int64_t mr, int64_t nr, float* cacc, int64_t ldc, bool first, bool last,
                         const Epilogue& e, int64_t row0, int64_t col0) {
  finish_tile_body<T>(tile, mr, nr, cacc, ldc, first, last, e, row0, col0);
}

// tile[kMr][kNr] = sum_k A[k][kMr] * B[k][kNr]
void micro_kernel_generic(int64_t kc, const float* A, const float* B, float* tile) {
  float acc[kMr][kNr] = {};
  for (int64_t k = 0; k < kc; ++k)
    for (int i = 0; i < kMr; ++i)
      for (int j = 0; j < kNr; ++j) acc[i][j] += A[k * kMr + i] * B[k * kNr + j];
  std::memcpy(tile, acc, sizeof(acc));
}

#if NVILA_HAVE_AVX2_PATH
NVILA_AVX2 void micro_kernel_avx2(int64_t kc, const float* A, const float* B, float* tile) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(B), b1 = _mm256_load_ps(B + 8);
    __m256 a = _mm256_broadcast_ss(A);
    c00 = _mm256_fmadd_ps(a, b0, c00), c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(A + 1);
    c10 = _mm256_fmadd_ps(a, b0, c10), c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(A + 2);
    c20 = _mm256_fmadd_ps(a, b0, c20), c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(A + 3);
    c30 = _mm256_fmadd_ps(a, b0, c30), c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(A + 4);
    c40 = _mm256_fmadd_ps(a, b0, c40), c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(A + 5);
    c50 = _mm256_fmadd_ps(a, b0, c50), c51 = _mm256_fmadd_ps(a, b1, c51);
    A += kMr;
    B += kNr;
  }
  _mm256_store_ps(tile + 0, c00), _mm256_store_ps(tile + 8, c01);
  _mm256_store_ps(tile + 16, c10), _mm256_store_ps(tile + 24, c11);
  _mm256_store_ps(tile + 32, c20), _mm256_store_ps(tile + 40, c21);
  _mm256_store_ps(tile + 48, c30), _mm256_store_ps(tile + 56, c31);
  _mm256_store_ps(tile + 64, c40), _mm256_store_ps(tile + 72, c41);
  _mm256_store_ps(tile + 80, c50), _mm256_store_ps(tile + 88, c51);
}

// 8 codes -> 8 exact fp32 values with the fp16 decode of dot_block_avx2 (times 2^8).
NVILA_AVX2 NVILA_INLINE __m256 decode8(const uint8_t* p) {
  const __m128i x = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i h =
      _mm_and_si128(_mm_srai_epi16(_mm_unpacklo_epi8(_mm_setzero_si128(), x), 1), _mm_set1_epi16(int16_t(0xbfff)));
  return _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(256.0f));
}

NVILA_AVX2 NVILA_INLINE void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

NVILA_AVX2 bool has_nan_avx2(const uint8_t* p, int64_t n) {
  const __m256i low7 = _mm256_set1_epi8(0x7f);
  __m256i acc = _mm256_setzero_si256();
  int64_t k = 0;
  for (; k + 32 <= n; k += 32) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + k));
    acc = _mm256_or_si256(acc, _mm256_cmpeq_epi8(_mm256_and_si256(x, low7), low7));
  }
  bool nan = !_mm256_testz_si256(acc, acc);
  for (; k < n; ++k) nan |= e4m3_is_nan(p[k]);
  return nan;
}

// pack_panel_generic<kNr> for a full panel: decode 8 codes of each row in registers
// and transpose 8x8 blocks; panels holding a NaN code (or partial) take the LUT path.
NVILA_AVX2 void pack_panel_b_avx2(const uint8_t* src, int64_t K, int64_t r0, int64_t rows, int64_t k0, int64_t kc,
                                  float* d) {
  bool nan = rows < kNr;
  for (int64_t i = 0; i < rows && !nan; ++i) nan = has_nan_avx2(src + (r0 + i) * K + k0, kc);
  if (nan) return pack_panel_body<kNr>(src, K, r0, rows, k0, kc, d);
  const uint8_t* s = src + r0 * K + k0;
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8) {
    for (int half = 0; half < 2; ++half) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = decode8(s + (half * 8 + i) * K + k);
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_store_ps(d + (k + i) * kNr + half * 8, r[i]);
    }
  }
  const float* lut = e4m3_table();
  for (; k < kc; ++k)
    for (int i = 0; i < kNr; ++i) d[k * kNr + i] = lut[s[i * K + k]];
}

template <int P>
NVILA_AVX2 void pack_panel_avx2(const uint8_t* src, int64_t K, int64_t r0, int64_t rows, int64_t k0, int64_t kc,
                                float* d) {
  pack_panel_body<P>(src, K, r0, rows, k0, kc, d);
}

template <typename T>
NVILA_AVX2 void finish_tile_avx2(const float* tile, int64_t mr, int64_t nr, float* cacc, int64_t ldc, bool first,
                                 bool last, const Epilogue& e, int64_t row0, int64_t col0) {
  finish_tile_body<T>(tile, mr, nr, cacc, ldc, first, last, e, row0, col0);
}
#endif

using PackFn = void (*)(const uint8_t*, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
using MicroFn = void (*)(int64_t, const float*, const float*, float*);
using FinishFn = void (*)(const float*, int64_t, int64_t, float*, int64_t, bool, bool, const Epilogue&, int64_t,
                          int64_t);

struct BlockedKernels {
  PackFn pack_a, pack_b;
  MicroFn micro;
  FinishFn finish;
};

template <typename T>
BlockedKernels blocked_kernels() {
#if NVILA_HAVE_AVX2_PATH
  if (use_avx2()) return {pack_panel_avx2<kMr>, pack_panel_b_avx2, micro_kernel_avx2, finish_tile_avx2<T>};
#endif
  return {pack_panel_generic<kMr>, pack_panel_generic<kNr>, micro_kernel_generic, finish_tile_generic<T>};
}

BlockedKernels blocked_kernels(DType t) {
  switch (t) {
    case DType::F32: return blocked_kernels<float>();
    case DType::F16: return blocked_kernels<half_t>();
    default: return blocked_kernels<bf16_t>();
  }
}

// n elements of T, 64-byte aligned (the packed panels of both blocked paths).
template <typename T>
struct AlignedArray {
  explicit AlignedArray(int64_t n)
      : p(static_cast<T*>(std::aligned_alloc(64, std::max<int64_t>(64, (n * int64_t(sizeof(T)) + 63) / 64 * 64)))) {}
  ~AlignedArray() { std::free(p); }
  AlignedArray(const AlignedArray&) = delete;
  AlignedArray& operator=(const AlignedArray&) = delete;
  T* p;
};

// The fp32 accumulator of a GEMM summed over K slices: none for one slice, out itself
// when it is fp32, else `buf` (allocated here).
float* slice_accumulator(const Epilogue& e, int64_t M, int64_t N, int64_t slices, std::unique_ptr<float[]>& buf) {
  if (slices <= 1) return nullptr;
  if (e.dtype == DType::F32) return static_cast<float*>(e.out);
  buf.reset(new float[M * N]);
  return buf.get();
}

void gemm_blocked(const Fp8GemmArgs& g, const Epilogue& e) {
  const int64_t M = g.M, N = g.N, K = g.K;
  const int64_t n_pad = ceil_div(N, kNr) * kNr;
  const int64_t slices = ceil_div(K, kKc);
  std::unique_ptr<float[]> acc_buf;
  float* cacc = slice_accumulator(e, M, N, slices, acc_buf);
  AlignedArray<float> bp(kKc * n_pad);  // the K slice of b: n_pad / kNr panels of [k][kNr]
  const int64_t m_blocks = ceil_div(M, kMc), n_blocks = ceil_div(N, kNc);
  const int64_t tiles = m_blocks * n_blocks;
  const BlockedKernels kern = blocked_kernels(e.dtype);
#pragma omp parallel
  {
    AlignedArray<float> ap(kMc * kKc);
    alignas(64) float tile[kMr * kNr];
    for (int64_t s = 0; s < slices; ++s) {
      const int64_t k0 = s * kKc, kc = std::min(kKc, K - k0);
      const bool first = s == 0, last = s == slices - 1;
#pragma omp for schedule(static)
      for (int64_t p = 0; p < n_pad / kNr; ++p)
        kern.pack_b(g.b, K, p * kNr, std::min<int64_t>(kNr, N - p * kNr), k0, kc, bp.p + p * kNr * kc);
      // implicit barrier: the slice of b is packed
      int64_t packed_block = -1;
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t mb = t / n_blocks, nb = t % n_blocks;
        const int64_t i0 = mb * kMc, mc = std::min(kMc, M - i0);
        if (mb != packed_block) {
          for (int64_t ir = 0; ir < mc; ir += kMr)
            kern.pack_a(g.a, K, i0 + ir, std::min<int64_t>(kMr, mc - ir), k0, kc, ap.p + ir * kc);
          packed_block = mb;
        }
        const int64_t j0 = nb * kNc, nc = std::min(kNc, N - j0);
        for (int64_t jr = 0; jr < nc; jr += kNr) {
          const float* bpanel = bp.p + (j0 + jr) * kc;
          const int64_t nr = std::min<int64_t>(kNr, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += kMr) {
            kern.micro(kc, ap.p + ir * kc, bpanel, tile);
            kern.finish(tile, std::min<int64_t>(kMr, mc - ir), nr, cacc, N, first, last, e, i0 + ir, j0 + jr);
          }
        }
      }
      // implicit barrier: bp is repacked by the next slice only after every tile is done
    }
  }
}

// ---- bf16 path (larger M, on CPUs with AVX512-BF16) -------------------------

#if NVILA_HAVE_AVX2_PATH
constexpr int kBMr = 8, kBNr = 32;  // micro-tile: 16 zmm accumulators
constexpr int64_t kBKc = 256;       // K slice (even): a kBKc x kBNr bf16 panel of b is 16 KB (L1)
constexpr int64_t kBMc = 128;       // rows of a per block: kBMc x kBKc bf16 is 64 KB (L2)
constexpr int64_t kBNc = 512;       // columns per parallel work item

// Packs rows [r0, r0 + rows) of the (R, K) codes, K range [k0, k0 + kc), as P bf16 rows
// in K pairs: d[p][i][2] = (x[i, k0 + 2p], x[i, k0 + 2p + 1]), zeros past the ends
// (rows >= rows, an odd kc's last pair). Each 32-bit pair is one VDPBF16PS operand lane.
template <int P>
void pack_pairs_bf16(const uint8_t* src, int64_t K, int64_t r0, int64_t rows, int64_t k0, int64_t kc, uint16_t* d) {
  const uint16_t* lut = e4m3_bf16_table();
  const int64_t pairs = ceil_div(kc, 2);
  for (int64_t i = 0; i < P; ++i) {
    uint16_t* di = d + 2 * i;
    if (i >= rows) {
      for (int64_t p = 0; p < pairs; ++p) di[p * 2 * P] = di[p * 2 * P + 1] = 0;
      continue;
    }
    const uint8_t* s = src + (r0 + i) * K + k0;
    for (int64_t k = 0; k < kc; ++k) di[(k >> 1) * 2 * P + (k & 1)] = lut[s[k]];
    if (kc & 1) di[(kc >> 1) * 2 * P + 1] = 0;
  }
}

// tile[kBMr][kBNr] = sum over the K pairs p of A[p][i] . B[p][j] (bf16 pairs, fp32 sums)
NVILA_AVX512BF16 void micro_kernel_bf16(int64_t pairs, const uint16_t* A, const uint16_t* B, float* tile) {
  __m512 c[kBMr][2];
  for (int i = 0; i < kBMr; ++i) c[i][0] = c[i][1] = _mm512_setzero_ps();
  const int32_t* a = reinterpret_cast<const int32_t*>(A);
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(B), b1 = (__m512bh)_mm512_load_si512(B + 32);
    for (int i = 0; i < kBMr; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(a[i]);
      c[i][0] = _mm512_dpbf16_ps(c[i][0], ai, b0);
      c[i][1] = _mm512_dpbf16_ps(c[i][1], ai, b1);
    }
    a += kBMr;
    B += 2 * kBNr;
  }
  for (int i = 0; i < kBMr; ++i) {
    _mm512_store_ps(tile + i * kBNr, c[i][0]);
    _mm512_store_ps(tile + i * kBNr + 16, c[i][1]);
  }
}

template <typename T>
void finish_tile_bf16(const float* tile, int64_t mr, int64_t nr, float* cacc, int64_t ldc, bool first, bool last,
                      const Epilogue& e, int64_t row0, int64_t col0) {
  finish_tile_body<T, kBNr>(tile, mr, nr, cacc, ldc, first, last, e, row0, col0);
}

FinishFn finish_bf16(DType t) {
  switch (t) {
    case DType::F32: return finish_tile_bf16<float>;
    case DType::F16: return finish_tile_bf16<half_t>;
    default: return finish_tile_bf16<bf16_t>;
  }
}

// As gemm_blocked (K slices, b packed once per slice and shared, blocks of a per
// thread), with both operands in bf16 and the VDPBF16PS micro-kernel.
void gemm_bf16(const Fp8GemmArgs& g, const Epilogue& e) {
  const int64_t M = g.M, N = g.N, K = g.K;
  const int64_t n_pad = ceil_div(N, kBNr) * kBNr;
  const int64_t slices = ceil_div(K, kBKc);
  std::unique_ptr<float[]> acc_buf;
  float* cacc = slice_accumulator(e, M, N, slices, acc_buf);
  AlignedArray<uint16_t> bp(kBKc * n_pad);  // the K slice of b: n_pad / kBNr panels of [pair][kBNr][2]
  const int64_t m_blocks = ceil_div(M, kBMc), n_blocks = ceil_div(N, kBNc);
  const int64_t tiles = m_blocks * n_blocks;
  const FinishFn finish = finish_bf16(e.dtype);
#pragma omp parallel
  {
    AlignedArray<uint16_t> ap(kBMc * kBKc);  // the block of a: kBMc / kBMr panels of [pair][kBMr][2]
    alignas(64) float tile[kBMr * kBNr];
    for (int64_t s = 0; s < slices; ++s) {
      const int64_t k0 = s * kBKc, kc = std::min(kBKc, K - k0), pairs = ceil_div(kc, 2);
      const bool first = s == 0, last = s == slices - 1;
#pragma omp for schedule(static)
      for (int64_t p = 0; p < n_pad / kBNr; ++p)
        pack_pairs_bf16<kBNr>(g.b, K, p * kBNr, std::min<int64_t>(kBNr, N - p * kBNr), k0, kc,
                              bp.p + p * kBNr * 2 * pairs);
      // implicit barrier: the slice of b is packed
      int64_t packed_block = -1;
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t mb = t / n_blocks, nb = t % n_blocks;
        const int64_t i0 = mb * kBMc, mc = std::min(kBMc, M - i0);
        if (mb != packed_block) {
          for (int64_t ir = 0; ir < mc; ir += kBMr)
            pack_pairs_bf16<kBMr>(g.a, K, i0 + ir, std::min<int64_t>(kBMr, mc - ir), k0, kc, ap.p + ir * 2 * pairs);
          packed_block = mb;
        }
        const int64_t j0 = nb * kBNc, nc = std::min(kBNc, N - j0);
        for (int64_t jr = 0; jr < nc; jr += kBNr) {
          const uint16_t* bpanel = bp.p + (j0 + jr) * 2 * pairs;
          const int64_t nr = std::min<int64_t>(kBNr, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += kBMr) {
            micro_kernel_bf16(pairs, ap.p + ir * 2 * pairs, bpanel, tile);
            finish(tile, std::min<int64_t>(kBMr, mc - ir), nr, cacc, N, first, last, e, i0 + ir, j0 + jr);
          }
        }
      }
      // implicit barrier: bp is repacked by the next slice only after every tile is done
    }
  }
}
#endif

// ---- E4M3 codes -> fp32 (the dequantize path of nvila_kernels.layers.Fp8Linear) ----

void e4m3_to_f32_generic(const uint8_t* q, float* out, int64_t n) {
  const float* lut = e4m3_table();
  for (int64_t i = 0; i < n; ++i) out[i] = lut[q[i]];
}

#if NVILA_HAVE_AVX2_PATH
// 32 codes at a time with the register decode of dot_block_avx2; blocks holding a NaN
// code (and the tail) take the table.
NVILA_AVX2 void e4m3_to_f32_avx2(const uint8_t* q, float* out, int64_t n) {
  const __m256i zero = _mm256_setzero_si256(), low7 = _mm256_set1_epi8(0x7f);
  const __m256i clear14 = _mm256_set1_epi16(int16_t(0xbfff));
  const __m256 two8 = _mm256_set1_ps(256.0f);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i));
    const __m256i nan = _mm256_cmpeq_epi8(_mm256_and_si256(x, low7), low7);
    if (!_mm256_testz_si256(nan, nan)) {
      e4m3_to_f32_generic(q + i, out + i, 32);
      continue;
    }
    // per 128-bit lane: lo holds codes 0..7 (and 16..23), hi codes 8..15 (and 24..31)
    const __m256i lo = _mm256_and_si256(_mm256_srai_epi16(_mm256_unpacklo_epi8(zero, x), 1), clear14);
    const __m256i hi = _mm256_and_si256(_mm256_srai_epi16(_mm256_unpackhi_epi8(zero, x), 1), clear14);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(lo)), two8));
    _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(hi)), two8));
    _mm256_storeu_ps(out + i + 16, _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(lo, 1)), two8));
    _mm256_storeu_ps(out + i + 24, _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(hi, 1)), two8));
  }
  e4m3_to_f32_generic(q + i, out + i, n - i);
}
#endif

}  // namespace

const char* fp8_gemm_isa() {
#if NVILA_HAVE_AVX2_PATH
  if (use_avx512bf16()) return "avx512bf16";
  if (use_avx2()) return "avx2";
#endif
  return "generic";
}

void fp8_e4m3_to_f32(const uint8_t* q, float* out, int64_t n) {
  constexpr int64_t kChunk = 1 << 16;  // codes per parallel work item (a multiple of 32)
  const bool avx2 = use_avx2();
#pragma omp parallel for schedule(static) if (n > kChunk)
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t len = std::min(kChunk, n - c);
#if NVILA_HAVE_AVX2_PATH
    if (avx2) {
      e4m3_to_f32_avx2(q + c, out + c, len);
      continue;
    }
#endif
    e4m3_to_f32_generic(q + c, out + c, len);
  }
}

void fp8_quantize(const Fp8QuantizeArgs& a) {
  if (a.format == Fp8Format::E4M3)
    quantize_dtype<Fp8Format::E4M3>(a);
  else
    quantize_dtype<Fp8Format::E5M2>(a);
}

void fp8_gemm(const Fp8GemmArgs& g) {
  const Epilogue e{g.out, g.out_dtype, g.N, (*g.scale_a) * (*g.scale_b), g.bias};
  if (g.M <= kDecodeMaxM) return gemm_decode(g, e);
#if NVILA_HAVE_AVX2_PATH
  if (use_avx512bf16()) return gemm_bf16(g, e);
#endif
  gemm_blocked(g, e);
}

}  // namespace nvila::cpu

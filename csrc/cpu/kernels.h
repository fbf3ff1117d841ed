// CPU kernels: raw pointers and sizes, no torch headers. Parallel with OpenMP.
#pragma once

#include "nvila/fp8_ops.h"
#include "nvila/merge_compress.h"
#include "nvila/multiscale_merge.h"
#include "nvila/multiscale_tile.h"
#include "nvila/spatial_compress.h"
#include "nvila/temporal_pool.h"

namespace nvila::cpu {

void spatial_compress(const SpatialCompressArgs& a);
void temporal_pool(const TemporalPoolArgs& a);
void multiscale_merge(const MultiscaleMergeArgs& a);
void merge_compress(const MergeCompressArgs& a);
void multiscale_tile(const MultiscaleTileArgs& a);
void fp8_quantize(const Fp8QuantizeArgs& a);
void fp8_gemm(const Fp8GemmArgs& a);

// The instruction set of fp8_gemm on this CPU (NVILA_KERNELS_CPU_ISA applied): "avx512bf16"
// (VDPBF16PS, both paths), "avx2" (F16C decode + fp32 FMA) or "generic" (portable C++).
const char* fp8_gemm_isa();
// out[i] = the exact fp32 value of the E4M3 code q[i] (NaN codes give NaN), i < n.
void fp8_e4m3_to_f32(const uint8_t* q, float* out, int64_t n);

}  // namespace nvila::cpu

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

}  // namespace nvila::cpu

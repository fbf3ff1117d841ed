// CPU kernels: raw pointers and sizes, no torch headers. Parallel with OpenMP.
#pragma once

#include "nvila/spatial_compress.h"
#include "nvila/temporal_pool.h"

namespace nvila::cpu {

void spatial_compress(const SpatialCompressArgs& a);
void temporal_pool(const TemporalPoolArgs& a);

}  // namespace nvila::cpu

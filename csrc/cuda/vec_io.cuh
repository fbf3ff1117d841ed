// VEC-wide global loads and stores of the gather kernels (spatial_compress,
// merge_compress): 16-byte accesses go through the cache-hinted PTX wrappers
// (loads: non-coherent, no L1 allocation; stores: streaming), 8-byte stores are
// streaming too, narrower ones are plain vector accesses.
#pragma once

#include "common.cuh"
#include "ptx.cuh"

namespace nvila::NVILA_CUDA_NS {

template <typename T, int VEC>
__device__ __forceinline__ Vec<T, VEC> load_vec(const T* p) {
  Vec<T, VEC> v;
  if constexpr (sizeof(v) == 16)
    ptx::ld_global_nc_na_v4(&v, p);
  else
    v = *reinterpret_cast<const Vec<T, VEC>*>(p);
  return v;
}

template <typename T, int VEC>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, VEC>& v) {
  if constexpr (sizeof(v) == 16)
    ptx::st_global_cs_v4(p, &v);
  else if constexpr (sizeof(v) == 8)
    ptx::st_global_cs_v2(p, &v);
  else
    *reinterpret_cast<Vec<T, VEC>*>(p) = v;
}

}  // namespace nvila::NVILA_CUDA_NS

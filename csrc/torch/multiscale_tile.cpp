// nvila::multiscale_tile: the torch binding (tensors -> MultiscaleTileArgs with the memory-safety
// checks, csrc/torch/binding.h) and the _cpu / _emu / _cuda implementations.
// Schemas: nvila_kernels/_ops.py.
#include "nvila/multiscale_tile.h"

#include <torch/library.h>

#include "binding.h"

namespace nvila::binding {
// One axis of resampling coefficients: bounds (n, 2) and weights (n, K) int32 on `ref`'s
// device. On CPU tensors every {first, taps} is checked against the input size.
inline int64_t tile_coeffs(const at::Tensor& bounds, const at::Tensor& weights, int64_t n, int64_t in_size,
                           const at::Tensor& ref, const char* bname, const char* wname) {
  TORCH_CHECK(bounds.scalar_type() == at::kInt && bounds.dim() == 2 && bounds.size(0) == n && bounds.size(1) == 2 &&
                  bounds.is_contiguous() && bounds.device() == ref.device(),
              bname, ": expected a contiguous int32 tensor of shape (", n, ", 2) on ", ref.device(), ", got ",
              bounds.scalar_type(), " ", bounds.sizes(), " on ", bounds.device());
  TORCH_CHECK(weights.scalar_type() == at::kInt && weights.dim() == 2 && weights.size(0) == n && weights.size(1) >= 1 &&
                  weights.is_contiguous() && weights.device() == ref.device(),
              wname, ": expected a contiguous int32 tensor of shape (", n, ", K) on ", ref.device(), ", got ",
              weights.scalar_type(), " ", weights.sizes(), " on ", weights.device());
  const int64_t K = weights.size(1);
  if (bounds.device().is_cpu()) {
    const int32_t* b = bounds.data_ptr<int32_t>();
    for (int64_t o = 0; o < n; ++o)
      TORCH_CHECK(b[2 * o] >= 0 && b[2 * o + 1] >= 1 && b[2 * o + 1] <= K && b[2 * o] + b[2 * o + 1] <= in_size, bname,
                  ": row ", o, " = {", b[2 * o], ", ", b[2 * o + 1], "} is outside an input of ", in_size,
                  " samples with K = ", K);
  }
  return K;
}

inline MultiscaleTileArgs multiscale_tile_args(const at::Tensor& image, at::IntArrayRef scale_rows,
                                               at::IntArrayRef scale_cols, const c10::List<bool>& vertical_first,
                                               const at::Tensor& xbounds, const at::Tensor& xweights,
                                               const at::Tensor& ybounds, const at::Tensor& yweights,
                                               at::ArrayRef<double> mean, at::ArrayRef<double> std, bool exact,
                                               const at::Tensor& out) {
  TORCH_CHECK(image.scalar_type() == at::kByte && image.dim() == 3 && image.size(2) == 3 && image.size(0) >= 1 &&
                  image.size(1) >= 1 && image.is_contiguous(),
              "image: expected a contiguous non-empty uint8 tensor of shape (H, W, 3), got ", image.scalar_type(), " ",
              image.sizes());
  const int64_t S = int64_t(scale_rows.size());
  TORCH_CHECK(S >= 1 && S <= kTileMaxScales, "scale_rows: expected 1 to ", kTileMaxScales, " scales, got ", S);
  TORCH_CHECK(int64_t(scale_cols.size()) == S && int64_t(vertical_first.size()) == S,
              "scale_cols, vertical_first: expected ", S, " scales (as scale_rows), got ", scale_cols.size(), ", ",
              vertical_first.size());
  TORCH_CHECK(mean.size() == 3 && std.size() == 3, "mean, std: expected 3 values each, got ", mean.size(), ", ",
              std.size());
  TORCH_CHECK(out.dim() == 4 && out.size(1) == 3 && out.size(2) == out.size(3) && out.size(3) >= 1,
              "out: expected shape (n_tiles, 3, T, T), got ", out.sizes());
  MultiscaleTileArgs a{};
  a.H = image.size(0);
  a.W = image.size(1);
  a.T = out.size(3);
  a.S = S;
  int64_t n_tiles = 0, nx = 0, ny = 0;
  for (int64_t s = 0; s < S; ++s) {
    TORCH_CHECK(scale_rows[s] >= 1 && scale_cols[s] >= 1, "scale_rows, scale_cols: expected ints >= 1, got ",
                scale_rows, ", ", scale_cols);
    a.rows[s] = scale_rows[s];
    a.cols[s] = scale_cols[s];
    a.vfirst[s] = vertical_first.get(s);
    a.tile0[s] = n_tiles;
    a.xoff[s] = nx;
    a.yoff[s] = ny;
    n_tiles += scale_rows[s] * scale_cols[s];
    nx += scale_cols[s] * a.T;
    ny += scale_rows[s] * a.T;
  }
  for (int c = 0; c < 3; ++c) {
    a.mean[c] = float(mean[c]);
    a.std[c] = float(std[c]);
  }
  a.dtype = to_dtype(out, "out");
  TORCH_CHECK(out.is_contiguous() && out.size(0) == n_tiles && out.device() == image.device(),
              "out: expected a contiguous tensor of shape (", n_tiles, ", 3, ", a.T, ", ", a.T, ") on ", image.device(),
              ", got ", out.sizes(), " on ", out.device());
  a.KX = tile_coeffs(xbounds, xweights, nx, a.W, image, "xbounds", "xweights");
  a.KY = tile_coeffs(ybounds, yweights, ny, a.H, image, "ybounds", "yweights");
  a.exact = exact;
  a.image = image.data_ptr<uint8_t>();
  a.xbounds = xbounds.data_ptr<int32_t>();
  a.xweights = xweights.data_ptr<int32_t>();
  a.ybounds = ybounds.data_ptr<int32_t>();
  a.yweights = yweights.data_ptr<int32_t>();
  a.out = out.data_ptr();
  return a;
}

namespace {

void multiscale_tile_cpu(const at::Tensor& image, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols,
                         const c10::List<bool>& vertical_first, const at::Tensor& xbounds, const at::Tensor& xweights,
                         const at::Tensor& ybounds, const at::Tensor& yweights, at::ArrayRef<double> mean,
                         at::ArrayRef<double> std, bool exact, at::Tensor& out) {
  check_cpu(image);
  cpu::multiscale_tile(multiscale_tile_args(image, scale_rows, scale_cols, vertical_first, xbounds, xweights, ybounds,
                                            yweights, mean, std, exact, out));
}

void multiscale_tile_emu(const at::Tensor& image, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols,
                         const c10::List<bool>& vertical_first, const at::Tensor& xbounds, const at::Tensor& xweights,
                         const at::Tensor& ybounds, const at::Tensor& yweights, at::ArrayRef<double> mean,
                         at::ArrayRef<double> std, bool exact, at::Tensor& out) {
  run_emu("multiscale_tile", image,
          multiscale_tile_args(image, scale_rows, scale_cols, vertical_first, xbounds, xweights, ybounds, yweights,
                               mean, std, exact, out));
}

void multiscale_tile_cuda(const at::Tensor& image, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols,
                          const c10::List<bool>& vertical_first, const at::Tensor& xbounds, const at::Tensor& xweights,
                          const at::Tensor& ybounds, const at::Tensor& yweights, at::ArrayRef<double> mean,
                          at::ArrayRef<double> std, bool exact, at::Tensor& out) {
  run_cuda("multiscale_tile", image,
           multiscale_tile_args(image, scale_rows, scale_cols, vertical_first, xbounds, xweights, ybounds, yweights,
                                mean, std, exact, out));
}

const bool multiscale_tile_layout = register_args_layout<MultiscaleTileArgs>(
    "multiscale_tile", {NVILA_ARGS_FIELD(MultiscaleTileArgs, image),   NVILA_ARGS_FIELD(MultiscaleTileArgs, out),
                        NVILA_ARGS_FIELD(MultiscaleTileArgs, H),       NVILA_ARGS_FIELD(MultiscaleTileArgs, W),
                        NVILA_ARGS_FIELD(MultiscaleTileArgs, T),       NVILA_ARGS_FIELD(MultiscaleTileArgs, S),
                        NVILA_ARGS_FIELD(MultiscaleTileArgs, rows),    NVILA_ARGS_FIELD(MultiscaleTileArgs, cols),
                        NVILA_ARGS_FIELD(MultiscaleTileArgs, tile0),   NVILA_ARGS_FIELD(MultiscaleTileArgs, xoff),
                        NVILA_ARGS_FIELD(MultiscaleTileArgs, yoff),    NVILA_ARGS_FIELD(MultiscaleTileArgs, vfirst),
                        NVILA_ARGS_FIELD(MultiscaleTileArgs, xbounds), NVILA_ARGS_FIELD(MultiscaleTileArgs, xweights),
                        NVILA_ARGS_FIELD(MultiscaleTileArgs, ybounds), NVILA_ARGS_FIELD(MultiscaleTileArgs, yweights),
                        NVILA_ARGS_FIELD(MultiscaleTileArgs, KX),      NVILA_ARGS_FIELD(MultiscaleTileArgs, KY),
                        NVILA_ARGS_FIELD(MultiscaleTileArgs, mean),    NVILA_ARGS_FIELD(MultiscaleTileArgs, std),
                        NVILA_ARGS_FIELD(MultiscaleTileArgs, exact),   NVILA_ARGS_FIELD(MultiscaleTileArgs, dtype)});

}  // namespace

NVILA_TORCH_IMPLS(multiscale_tile)

}  // namespace nvila::binding

// The Python module nvila_kernels._C. Importing it registers the kernels with
// the torch dispatcher (TORCH_LIBRARY_IMPL in ops_*.cpp); build_info() says what
// this build contains. Plain CPython API, no torch headers.
#include <Python.h>

#include <cstddef>
#include <cstring>
#include <initializer_list>

#include "../cpu/kernels.h"
#include "../cuda/launchers.h"

#ifndef NVILA_CUDA_ARCHS
#define NVILA_CUDA_ARCHS ""
#endif
#ifndef NVILA_TORCH_VERSION
#define NVILA_TORCH_VERSION "unknown"
#endif
#ifndef NVILA_CUDA_VERSION
#define NVILA_CUDA_VERSION ""
#endif

static PyObject* build_info(PyObject*, PyObject*) {
#ifdef NVILA_WITH_CUDA
  PyObject* cuda = Py_True;
#else
  PyObject* cuda = Py_False;
#endif
  return Py_BuildValue("{s:O,s:O,s:s,s:s,s:s}", "cpu", Py_True, "cuda", cuda, "cuda_archs", NVILA_CUDA_ARCHS,
                       "cuda_version", NVILA_CUDA_VERSION, "torch_version", NVILA_TORCH_VERSION);
}

static PyObject* cpu_isa(PyObject*, PyObject*) { return PyUnicode_FromString(nvila::cpu::fp8_gemm_isa()); }

// fp8_e4m3_to_float32(codes, out): out (a writable float32 buffer) = the values of the
// E4M3 codes (a bytes-like buffer of the same length); Fp8Linear's dequantize path.
static PyObject* fp8_e4m3_to_float32(PyObject*, PyObject* args) {
  Py_buffer codes, out;
  if (!PyArg_ParseTuple(args, "y*w*", &codes, &out)) return nullptr;
  const bool ok = out.len == codes.len * Py_ssize_t(sizeof(float));
  if (ok) {
    Py_BEGIN_ALLOW_THREADS nvila::cpu::fp8_e4m3_to_f32(static_cast<const uint8_t*>(codes.buf),
                                                       static_cast<float*>(out.buf), codes.len);
    Py_END_ALLOW_THREADS
  } else {
    PyErr_Format(PyExc_ValueError, "out: expected %zd bytes (4 per code), got %zd", codes.len * 4, out.len);
  }
  PyBuffer_Release(&codes);
  PyBuffer_Release(&out);
  return ok ? Py_NewRef(Py_None) : nullptr;
}

// Test hooks of the CUDA emulator (backend "emu"), see nvila::emu in launchers.h.
static PyObject* set_emulated_compute_capability(PyObject*, PyObject* arg) {
  const long cc = PyLong_AsLong(arg);
  if (cc == -1 && PyErr_Occurred()) return nullptr;
  if (cc < 0 || cc > 1000) {
    PyErr_SetString(PyExc_ValueError, "cc: expected major * 10 + minor, e.g. 90");
    return nullptr;
  }
  return PyLong_FromLong(nvila::emu::set_compute_capability(int(cc)));
}

static PyObject* emulated_wgmma_count(PyObject*, PyObject*) { return PyLong_FromLongLong(nvila::emu::wgmma_count()); }

// ---- test hooks of the launch planners (nvila_kernels/_nvrtc.py mirrors them) -----------
// launch_config(op, args, cc, max_dynamic_smem, sm90a): <op>_launch_config of the op's
// args struct given as its bytes; (grid_x, grid_y, block, smem, (variant...)).
// args_layout(op): {"sizeof": n, "fields": {name: offset}} of the op's args struct.
namespace {

struct Field {
  const char* name;
  size_t offset;
};
#define NVILA_FIELD(S, f) \
  Field { #f, offsetof(S, f) }

template <typename Args>
PyObject* layout(std::initializer_list<Field> fields) {
  PyObject* d = PyDict_New();
  for (const Field& f : fields) {
    PyObject* v = PyLong_FromSize_t(f.offset);
    PyDict_SetItemString(d, f.name, v);
    Py_DECREF(v);
  }
  PyObject* out = Py_BuildValue("{s:n,s:N}", "sizeof", Py_ssize_t(sizeof(Args)), "fields", d);
  return out;
}

template <typename Args, nvila::LaunchConfig (*Plan)(const Args&, const nvila::LaunchTarget&)>
PyObject* plan(const char* buf, Py_ssize_t len, const nvila::LaunchTarget& t) {
  if (len != Py_ssize_t(sizeof(Args))) {
    PyErr_Format(PyExc_ValueError, "args: expected %zd bytes (the C++ struct), got %zd", Py_ssize_t(sizeof(Args)), len);
    return nullptr;
  }
  Args a;
  std::memcpy(static_cast<void*>(&a), buf, sizeof(Args));
  const nvila::LaunchConfig c = Plan(a, t);
  return Py_BuildValue("(LLii(iii))", (long long)c.grid_x, (long long)c.grid_y, c.block, c.smem, c.variant[0],
                       c.variant[1], c.variant[2]);
}

struct OpHooks {
  const char* name;
  PyObject* (*plan)(const char*, Py_ssize_t, const nvila::LaunchTarget&);
  PyObject* (*layout)();
};

using namespace nvila;
const OpHooks kOps[] = {
    {"spatial_compress", plan<SpatialCompressArgs, spatial_compress_launch_config>,
     [] {
       using S = SpatialCompressArgs;
       return layout<S>({NVILA_FIELD(S, x), NVILA_FIELD(S, out), NVILA_FIELD(S, ln_weight), NVILA_FIELD(S, ln_bias),
                         NVILA_FIELD(S, B), NVILA_FIELD(S, H), NVILA_FIELD(S, W), NVILA_FIELD(S, C), NVILA_FIELD(S, k),
                         NVILA_FIELD(S, sB), NVILA_FIELD(S, sH), NVILA_FIELD(S, sW), NVILA_FIELD(S, eps),
                         NVILA_FIELD(S, dtype)});
     }},
    {"temporal_pool", plan<TemporalPoolArgs, temporal_pool_launch_config>,
     [] {
       using S = TemporalPoolArgs;
       return layout<S>({NVILA_FIELD(S, x), NVILA_FIELD(S, out), NVILA_FIELD(S, T), NVILA_FIELD(S, N),
                         NVILA_FIELD(S, group), NVILA_FIELD(S, sT), NVILA_FIELD(S, dtype)});
     }},
    {"multiscale_merge", plan<MultiscaleMergeArgs, multiscale_merge_launch_config>,
     [] {
       using S = MultiscaleMergeArgs;
       return layout<S>({NVILA_FIELD(S, x), NVILA_FIELD(S, out), NVILA_FIELD(S, S), NVILA_FIELD(S, C),
                         NVILA_FIELD(S, h), NVILA_FIELD(S, w), NVILA_FIELD(S, rows), NVILA_FIELD(S, cols),
                         NVILA_FIELD(S, tile0), NVILA_FIELD(S, dtype)});
     }},
    {"merge_compress", plan<MergeCompressArgs, merge_compress_launch_config>,
     [] {
       using S = MergeCompressArgs;
       return layout<S>({NVILA_FIELD(S, m), NVILA_FIELD(S, out), NVILA_FIELD(S, ln_weight), NVILA_FIELD(S, ln_bias),
                         NVILA_FIELD(S, k), NVILA_FIELD(S, eps)});
     }},
    {"multiscale_tile", plan<MultiscaleTileArgs, multiscale_tile_launch_config>,
     [] {
       using S = MultiscaleTileArgs;
       return layout<S>(
           {NVILA_FIELD(S, image),   NVILA_FIELD(S, out),      NVILA_FIELD(S, H),       NVILA_FIELD(S, W),
            NVILA_FIELD(S, T),       NVILA_FIELD(S, S),        NVILA_FIELD(S, rows),    NVILA_FIELD(S, cols),
            NVILA_FIELD(S, tile0),   NVILA_FIELD(S, xoff),     NVILA_FIELD(S, yoff),    NVILA_FIELD(S, vfirst),
            NVILA_FIELD(S, xbounds), NVILA_FIELD(S, xweights), NVILA_FIELD(S, ybounds), NVILA_FIELD(S, yweights),
            NVILA_FIELD(S, KX),      NVILA_FIELD(S, KY),       NVILA_FIELD(S, mean),    NVILA_FIELD(S, std),
            NVILA_FIELD(S, exact),   NVILA_FIELD(S, dtype)});
     }},
    {"fp8_quantize", plan<Fp8QuantizeArgs, fp8_quantize_launch_config>,
     [] {
       using S = Fp8QuantizeArgs;
       return layout<S>({NVILA_FIELD(S, x), NVILA_FIELD(S, dtype), NVILA_FIELD(S, n), NVILA_FIELD(S, scale),
                         NVILA_FIELD(S, scale_out), NVILA_FIELD(S, workspace), NVILA_FIELD(S, q),
                         NVILA_FIELD(S, format)});
     }},
    {"fp8_gemm", plan<Fp8GemmArgs, fp8_gemm_launch_config>,
     [] {
       using S = Fp8GemmArgs;
       return layout<S>({NVILA_FIELD(S, a), NVILA_FIELD(S, b), NVILA_FIELD(S, scale_a), NVILA_FIELD(S, scale_b),
                         NVILA_FIELD(S, bias), NVILA_FIELD(S, out), NVILA_FIELD(S, out_dtype), NVILA_FIELD(S, M),
                         NVILA_FIELD(S, N), NVILA_FIELD(S, K)});
     }},
};

const OpHooks* find_op(const char* name) {
  for (const OpHooks& op : kOps)
    if (std::strcmp(op.name, name) == 0) return &op;
  PyErr_Format(PyExc_ValueError, "op: no launch planner for %s", name);
  return nullptr;
}

}  // namespace

static PyObject* launch_config(PyObject*, PyObject* args) {
  const char* name;
  Py_buffer buf;
  nvila::LaunchTarget t{};
  if (!PyArg_ParseTuple(args, "sy*iii", &name, &buf, &t.cc, &t.max_dynamic_smem, &t.sm90a)) return nullptr;
  const OpHooks* op = find_op(name);
  PyObject* out = op ? op->plan(static_cast<const char*>(buf.buf), buf.len, t) : nullptr;
  PyBuffer_Release(&buf);
  return out;
}

static PyObject* args_layout(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (!name) return nullptr;
  const OpHooks* op = find_op(name);
  return op ? op->layout() : nullptr;
}

static PyMethodDef methods[] = {
    {"build_info", build_info, METH_NOARGS, "What this build of the extension contains."},
    {"cpu_isa", cpu_isa, METH_NOARGS, "The instruction set of the CPU fp8_gemm here: avx512bf16, avx2 or generic."},
    {"fp8_e4m3_to_float32", fp8_e4m3_to_float32, METH_VARARGS,
     "fp8_e4m3_to_float32(codes, out): decodes E4M3 codes into a float32 buffer of the same length."},
    {"set_emulated_compute_capability", set_emulated_compute_capability, METH_O,
     "Sets the compute capability (major * 10 + minor) the CUDA emulator reports; returns the previous one."},
    {"emulated_wgmma_count", emulated_wgmma_count, METH_NOARGS,
     "Warpgroup MMAs (wgmma.mma_async) the CUDA emulator has executed."},
    {"launch_config", launch_config, METH_VARARGS,
     "launch_config(op, args_bytes, cc, max_dynamic_smem, sm90a): the C++ launch plan of an op (test hook)."},
    {"args_layout", args_layout, METH_O, "args_layout(op): sizeof and field offsets of the op's args struct."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "nvila_kernels compiled kernels", -1, methods};

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module); }

// The Python module nvila_kernels._C. Importing it registers the kernels with
// the torch dispatcher (TORCH_LIBRARY_IMPL in csrc/torch/<op>.cpp); build_info() says what
// this build contains. Plain CPython API, no torch headers.
#define PY_SSIZE_T_CLEAN  // Py_ssize_t lengths for the y# formats
#include <Python.h>

#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <string>

#include "../cuda/launchers.h"
#include "args_layout.h"
#include "nvila/fp8_ops.h"

#ifndef NVILA_CUDA_ARCHS
#define NVILA_CUDA_ARCHS ""
#endif
#ifndef NVILA_TORCH_VERSION
#define NVILA_TORCH_VERSION "unknown"
#endif
#ifndef NVILA_CUDA_VERSION
#define NVILA_CUDA_VERSION ""
#endif
#ifndef NVILA_EMU_TRAFFIC
#define NVILA_EMU_TRAFFIC 0
#endif

static PyObject* build_info(PyObject*, PyObject*) {
#ifdef NVILA_WITH_CUDA
  PyObject* cuda = Py_True;
#else
  PyObject* cuda = Py_False;
#endif
#if NVILA_EMU_TRAFFIC
  PyObject* emu_traffic = Py_True;  // the emulator TUs are instrumented for the traffic counters
#else
  PyObject* emu_traffic = Py_False;
#endif
  return Py_BuildValue("{s:O,s:O,s:s,s:s,s:s,s:O}", "cpu", Py_True, "cuda", cuda, "cuda_archs", NVILA_CUDA_ARCHS,
                       "cuda_version", NVILA_CUDA_VERSION, "torch_version", NVILA_TORCH_VERSION, "emu_traffic",
                       emu_traffic);
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

// The emulator's memory-traffic counters (csrc/emu/traffic.cpp).
static PyObject* emu_traffic(PyObject*, PyObject* arg) {
  const int on = PyObject_IsTrue(arg);
  if (on < 0) return nullptr;
  return PyBool_FromLong(nvila::emu::set_traffic(on != 0));
}

static PyObject* emu_traffic_take(PyObject*, PyObject*) {
  PyObject* out = PyDict_New();
  for (const nvila::emu::TrafficTotals& t : nvila::emu::take_traffic()) {
    const long long sectors = t.load_sectors + t.store_sectors;
    PyObject* d = Py_BuildValue(
        "{s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L}", "launches", (long long)t.launches, "load_requests",
        (long long)t.load_requests, "store_requests", (long long)t.store_requests, "requests",
        (long long)(t.load_requests + t.store_requests), "load_sectors", (long long)t.load_sectors, "store_sectors",
        (long long)t.store_sectors, "sectors", sectors, "bytes_requested", 32 * sectors, "load_bytes_used",
        (long long)t.load_bytes_used, "store_bytes_used", (long long)t.store_bytes_used, "bytes_used",
        (long long)(t.load_bytes_used + t.store_bytes_used), "shared_requests", (long long)t.shared_requests,
        "wavefronts", (long long)t.wavefronts, "ideal_wavefronts", (long long)t.ideal_wavefronts);
    if (!d) {
      Py_DECREF(out);
      return nullptr;
    }
    PyDict_SetItemString(out, t.kernel.c_str(), d);
    Py_DECREF(d);
  }
  return out;
}

static PyObject* emu_traffic_probe(PyObject*, PyObject* arg) {
  const long kind = PyLong_AsLong(arg);
  if (kind == -1 && PyErr_Occurred()) return nullptr;
  int err = 0;
  Py_BEGIN_ALLOW_THREADS err = nvila::emu::traffic_probe(int(kind));
  Py_END_ALLOW_THREADS if (err != 0) {
    PyErr_Format(PyExc_RuntimeError, "traffic probe %ld failed (%d)", kind, err);
    return nullptr;
  }
  return Py_NewRef(Py_None);
}

// ---- the CUDA ops' registry (csrc/cuda/launchers.h), as built for the emulator --------
// kernels(): {op: (source, [kernel name expressions in nvila::cuda])}, what NVRTC compiles.
// launch_config(op, args, cc, max_dynamic_smem, sm90a): the op's registered planner on its
// args struct given as bytes: (dtype, grid_x, grid_y, block, smem, (variant...)).
// args_layout(op): {"sizeof": n, "fields": {name: (offset, size)}} of the op's args struct.
// emulated_launches(): the emulator's launches since the last call (the first 1024 are kept):
// [(kernel, config, args bytes)].
namespace nvila::binding {
PyObject* set_nvrtc_launcher(PyObject* launcher);  // csrc/torch/launch.cpp
}  // namespace nvila::binding

namespace {

PyObject* config_tuple(const nvila::LaunchConfig& c) {
  return Py_BuildValue("(iLLii(iii))", int(c.dtype), (long long)c.grid_x, (long long)c.grid_y, c.block, c.smem,
                       c.variant[0], c.variant[1], c.variant[2]);
}

const nvila::OpLaunchers* find_op(const char* name) {
  for (const nvila::OpLaunchers& op : nvila::emu::registry())
    if (std::strcmp(op.op, name) == 0) return &op;
  PyErr_Format(PyExc_ValueError, "op: no CUDA op named %s", name);
  return nullptr;
}

}  // namespace

static PyObject* kernels(PyObject*, PyObject*) {
  PyObject* out = PyDict_New();
  for (const nvila::OpLaunchers& op : nvila::emu::registry()) {
    PyObject* names = PyList_New(0);
    for (const nvila::KernelName& k : op.kernels) {
      PyObject* name = PyUnicode_FromString((std::string("nvila::cuda::") + k.name).c_str());
      PyList_Append(names, name);
      Py_DECREF(name);
    }
    PyObject* entry = Py_BuildValue("(sN)", op.source.c_str(), names);
    PyDict_SetItemString(out, op.op, entry);
    Py_DECREF(entry);
  }
  return out;
}

static PyObject* launch_config(PyObject*, PyObject* args) {
  const char* name;
  Py_buffer buf;
  nvila::LaunchTarget t{};
  if (!PyArg_ParseTuple(args, "sy*iii", &name, &buf, &t.cc, &t.max_dynamic_smem, &t.sm90a)) return nullptr;
  const nvila::OpLaunchers* op = find_op(name);
  PyObject* out = nullptr;
  if (op && buf.len != Py_ssize_t(op->args_size))
    PyErr_Format(PyExc_ValueError, "args: expected %zd bytes (the C++ struct), got %zd", Py_ssize_t(op->args_size),
                 buf.len);
  else if (op)
    out = config_tuple(op->plan(buf.buf, t));
  PyBuffer_Release(&buf);
  return out;
}

std::vector<nvila::ArgsLayout>& nvila::args_layouts() {
  static std::vector<ArgsLayout> layouts;  // filled by csrc/torch/<op>.cpp's NVILA_ARGS_LAYOUT
  return layouts;
}

static PyObject* args_layout(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (!name) return nullptr;
  for (const nvila::ArgsLayout& op : nvila::args_layouts()) {
    if (std::strcmp(op.op, name) != 0) continue;
    PyObject* fields = PyDict_New();
    for (const nvila::ArgsField& f : op.fields) {
      PyObject* v = Py_BuildValue("(nn)", Py_ssize_t(f.offset), Py_ssize_t(f.size));
      PyDict_SetItemString(fields, f.name, v);
      Py_DECREF(v);
    }
    return Py_BuildValue("{s:n,s:N}", "sizeof", Py_ssize_t(op.size), "fields", fields);
  }
  PyErr_Format(PyExc_ValueError, "op: no args struct for %s", name);
  return nullptr;
}

static PyObject* emulated_launches(PyObject*, PyObject*) {
  PyObject* out = PyList_New(0);
  for (const nvila::LaunchRecord& r : nvila::emu::take_launches()) {
    PyObject* item =
        Py_BuildValue("(sNy#)", r.kernel.c_str(), config_tuple(r.config), r.args.data(), Py_ssize_t(r.args.size()));
    PyList_Append(out, item);
    Py_DECREF(item);
  }
  return out;
}

static PyObject* set_nvrtc_launcher(PyObject*, PyObject* launcher) {
  return nvila::binding::set_nvrtc_launcher(launcher);
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
    {"emu_traffic", emu_traffic, METH_O,
     "emu_traffic(on): switches the CUDA emulator's memory-traffic counters on or off; returns the previous state."},
    {"emu_traffic_take", emu_traffic_take, METH_NOARGS,
     "The emulator's memory-traffic totals per kernel since the last call (then reset): {kernel: {counter: n}}."},
    {"emu_traffic_probe", emu_traffic_probe, METH_O,
     "emu_traffic_probe(kind): runs one micro-kernel with known traffic on the emulator (csrc/emu/traffic_probe.cu)."},
    {"kernels", kernels, METH_NOARGS, "The CUDA ops' source files and kernel name expressions (what NVRTC compiles)."},
    {"launch_config", launch_config, METH_VARARGS,
     "launch_config(op, args_bytes, cc, max_dynamic_smem, sm90a): the op's C++ launch plan (test hook)."},
    {"args_layout", args_layout, METH_O, "args_layout(op): sizeof and field (offset, size) of the op's args struct."},
    {"emulated_launches", emulated_launches, METH_NOARGS,
     "The CUDA emulator's launches since the last call: [(kernel, plan, args bytes)] (test hook)."},
    {"set_nvrtc_launcher", set_nvrtc_launcher, METH_O,
     "Serves the cuda ops with NVRTC through `launcher` (nvila_kernels._nvrtc), or stops (None); returns the previous "
     "one."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "nvila_kernels compiled kernels", -1, methods};

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module); }

// How the bindings launch the CUDA kernels: the emulator, this build's nvcc kernels, or
// NVRTC through the Python launcher of nvila_kernels/_nvrtc.py (set_nvrtc_launcher).
// With NVRTC the plan, the args struct and the kernel names still come from here: the
// op's registered planner and kernel table (csrc/cuda/<op>.cu, through its emulator
// build, which every build has); Python only compiles, caches, loads and launches.
#define PY_SSIZE_T_CLEAN  // Py_ssize_t lengths for the y# formats
#include <Python.h>

#include <string>

#include "binding.h"

#ifdef NVILA_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace nvila::binding {
namespace {

PyObject* g_nvrtc_launcher = nullptr;  // owned reference, or nullptr

const OpLaunchers& emu_op(const char* op, size_t size) {
  const OpLaunchers* o = emu::find_op(op, size);
  TORCH_CHECK(o, "nvila::", op, ": no CUDA kernels registered for this op (csrc/cuda/", op, ".cu)");
  return *o;
}

// Holds the GIL; turns a pending Python exception into a c10::Error.
struct Gil {
  PyGILState_STATE state = PyGILState_Ensure();
  ~Gil() { PyGILState_Release(state); }
  void check(PyObject* result, const char* op) {
    if (result) return;
    PyObject *type, *value, *trace;
    PyErr_Fetch(&type, &value, &trace);
    PyObject* text = value ? PyObject_Str(value) : nullptr;
    std::string msg = text && PyUnicode_Check(text) ? PyUnicode_AsUTF8(text) : "unknown error";
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(trace);
    TORCH_CHECK(false, op, ": NVRTC launch failed: ", msg);
  }
};

void launch_nvrtc(const char* op, const at::Tensor& x, const void* args, size_t size) {
  const OpLaunchers& o = emu_op(op, size);
  const std::string device = x.device().str();
  Gil gil;
  PyObject* target = PyObject_CallMethod(g_nvrtc_launcher, "target", "s", device.c_str());
  gil.check(target, op);
  LaunchTarget t{};
  const bool parsed = PyArg_ParseTuple(target, "iii", &t.cc, &t.max_dynamic_smem, &t.sm90a);
  Py_DECREF(target);
  gil.check(parsed ? Py_None : nullptr, op);
  const LaunchConfig c = o.plan(args, t);
  if (c.grid_x == 0) return;
  TORCH_CHECK(grid_ok(c), op, ": grid (", c.grid_x, ", ", c.grid_y, ") exceeds CUDA's limits");
  PyObject* names = PyList_New(0);
  for (const KernelName& k : o.kernels) {
    if (!selects(c, k.key)) continue;
    PyObject* name = PyUnicode_FromString((std::string("nvila::cuda::") + k.name).c_str());
    PyList_Append(names, name);
    Py_DECREF(name);
  }
  const Py_ssize_t n = PyList_Size(names);
  PyObject* done = n == 0 ? nullptr
                          : PyObject_CallMethod(g_nvrtc_launcher, "launch", "sOLLiiy#s", o.source.c_str(), names,
                                                (long long)c.grid_x, (long long)c.grid_y, c.block, c.smem,
                                                static_cast<const char*>(args), Py_ssize_t(size), device.c_str());
  Py_DECREF(names);
  TORCH_CHECK(n > 0, op, ": no kernel instance for the plan (csrc/cuda/", o.source, " kKernels)");
  gil.check(done, op);
  Py_DECREF(done);
}

}  // namespace

bool nvrtc_enabled() { return g_nvrtc_launcher != nullptr; }

// _C.set_nvrtc_launcher(launcher or None); the GIL is held (called from Python).
PyObject* set_nvrtc_launcher(PyObject* launcher) {
  PyObject* old = g_nvrtc_launcher;
  g_nvrtc_launcher = launcher == Py_None ? nullptr : launcher;
  Py_XINCREF(g_nvrtc_launcher);
  if (!old) Py_RETURN_NONE;
  return old;  // the previous launcher (its reference passes to the caller)
}

void launch_emu(const char* op, const at::Tensor& x, const void* args, size_t size) {
  check_cpu(x);
  const int code = emu_op(op, size).launch(args, nullptr);
  TORCH_CHECK(code == 0, "CUDA emulator launch failed: ", emu::error_string(code));
}

void launch_cuda(const char* op, const at::Tensor& x, const void* args, size_t size) {
  if (nvrtc_enabled()) return launch_nvrtc(op, x, args, size);  // the launcher checks the device
  TORCH_CHECK(x.device().is_cuda(), "x: expected a CUDA tensor, got ", x.device());
#ifdef NVILA_WITH_CUDA
  const OpLaunchers* o = cuda::find_op(op, size);
  TORCH_CHECK(o, "nvila::", op, ": no CUDA kernels registered for this op (csrc/cuda/", op, ".cu)");
  const c10::cuda::CUDAGuard guard(x.device());
  const int code = o->launch(args, c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
  TORCH_CHECK(code == 0, "CUDA kernel launch failed: ", cuda::error_string(code));
#else
  TORCH_CHECK(false, "nvila::", op,
              "_cuda: this build of nvila_kernels._C has no CUDA kernels and NVRTC is not set up "
              "(`python -m nvila_kernels` says why)");
#endif
}

}  // namespace nvila::binding

// The Python module nvila_kernels._C. Importing it registers the kernels with
// the torch dispatcher (TORCH_LIBRARY_IMPL in ops_*.cpp); build_info() says what
// this build contains. Plain CPython API, no torch headers.
#include <Python.h>

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

static PyMethodDef methods[] = {
    {"build_info", build_info, METH_NOARGS, "What this build of the extension contains."},
    {"set_emulated_compute_capability", set_emulated_compute_capability, METH_O,
     "Sets the compute capability (major * 10 + minor) the CUDA emulator reports; returns the previous one."},
    {"emulated_wgmma_count", emulated_wgmma_count, METH_NOARGS,
     "Warpgroup MMAs (wgmma.mma_async) the CUDA emulator has executed."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "nvila_kernels compiled kernels", -1, methods};

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module); }

// The Python module nvila_kernels._C. Importing it registers the kernels with
// the torch dispatcher (TORCH_LIBRARY_IMPL in ops_*.cpp); build_info() says what
// this build contains. Plain CPython API, no torch headers.
#include <Python.h>

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

static PyMethodDef methods[] = {
    {"build_info", build_info, METH_NOARGS, "What this build of the extension contains."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "nvila_kernels compiled kernels", -1, methods};

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module); }

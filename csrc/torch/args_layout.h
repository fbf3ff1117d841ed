// The args_layout test hook's registry (torch-free: module.cpp reads it).
#pragma once

#include <cstddef>
#include <vector>

namespace nvila {

// The fields of an op's args struct, for the args_layout test hook (module.cpp), which
// packs structs for the planners at sizes no test can allocate; csrc/torch/<op>.cpp
// registers them (register_args_layout, binding.h).
struct ArgsField {
  const char* name;
  size_t offset, size;
};
struct ArgsLayout {
  const char* op;
  size_t size;
  std::vector<ArgsField> fields;
};
std::vector<ArgsLayout>& args_layouts();
#define NVILA_ARGS_FIELD(S, f) \
  ::nvila::ArgsField { #f, offsetof(S, f), sizeof(S::f) }

}  // namespace nvila

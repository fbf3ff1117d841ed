// merge_compress.cu compiled by g++ under the SIMT emulator (launchers in nvila::emu).
#include "emu.h"
//
#include "../cuda/merge_compress.cu"

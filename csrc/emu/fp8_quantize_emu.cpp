// fp8_quantize.cu compiled by g++ under the SIMT emulator (launchers in nvila::emu).
#include "emu.h"
//
#include "../cuda/fp8_quantize.cu"

// temporal_pool.cu compiled by g++ under the SIMT emulator (launchers in nvila::emu).
#include "emu.h"
//
#include "../cuda/temporal_pool.cu"

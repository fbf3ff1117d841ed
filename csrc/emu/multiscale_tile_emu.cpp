// multiscale_tile.cu compiled by g++ under the SIMT emulator (launchers in nvila::emu).
#include "emu.h"
//
#include "../cuda/multiscale_tile.cu"

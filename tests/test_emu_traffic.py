"""The CUDA emulator's memory-traffic counters (csrc/emu/traffic.cpp) on micro-kernels with
known answers (csrc/emu/traffic_probe.cu, one warp of 32 lanes, 256-byte aligned buffers).

Expected figures derived by hand: a global request costs the distinct 32-byte sectors its
32 lanes touch; a shared request costs, per phase (32 lanes for 4-byte accesses, 8 lanes
for 16-byte), the most distinct 4-byte words in any one of the 32 banks."""

import pytest
import torch

import nvila_kernels as nk

_C = pytest.importorskip("nvila_kernels._C")
pytestmark = pytest.mark.skipif(
    not _C.build_info().get("emu_traffic"), reason="built with NVILA_KERNELS_EMU_TRAFFIC=0 (no instrumentation)"
)

COALESCED, STRIDE2, SHARED_32WAY, BROADCAST, VEC16, SHARED16, SHARED16_STRIDE2, PADDED, CP_ASYNC = range(9)


@pytest.fixture
def counting():
    _C.emu_traffic_take()
    previous = _C.emu_traffic(True)
    yield
    _C.emu_traffic(previous)
    _C.emu_traffic_take()


def probe(kind):
    _C.emu_traffic_probe(kind)
    totals = _C.emu_traffic_take()
    assert len(totals) == 1
    ((name, t),) = totals.items()
    assert t["launches"] == 1
    return t


def test_off_by_default_records_nothing():
    _C.emu_traffic_take()
    assert _C.emu_traffic(False) is False  # nothing in the test run switched it on and left it
    _C.emu_traffic_probe(COALESCED)
    assert _C.emu_traffic_take() == {}


def test_coalesced_floats(counting):
    # 32 lanes x 4 bytes, consecutive: 128 bytes = 4 sectors, all of them used
    t = probe(COALESCED)
    assert (t["load_requests"], t["load_sectors"], t["load_bytes_used"]) == (1, 4, 128)
    assert (t["store_requests"], t["store_sectors"], t["store_bytes_used"]) == (1, 4, 128)
    assert t["bytes_requested"] == 8 * 32
    assert t["shared_requests"] == 0


def test_stride2_floats_use_half_the_sectors(counting):
    # lane l reads bytes [8l, 8l + 4): the warp spans 256 bytes = 8 sectors, uses 128 of them
    t = probe(STRIDE2)
    assert (t["load_requests"], t["load_sectors"], t["load_bytes_used"]) == (1, 8, 128)
    assert t["load_bytes_used"] / (32 * t["load_sectors"]) == 0.5


def test_16_byte_accesses_through_ptx_wrappers(counting):
    # ld.global.nc / st.global.cs v4: 32 x 16 contiguous bytes = 512 bytes = 16 sectors per request
    t = probe(VEC16)
    assert (t["load_requests"], t["load_sectors"], t["load_bytes_used"]) == (1, 16, 512)
    assert (t["store_requests"], t["store_sectors"], t["store_bytes_used"]) == (1, 16, 512)


def test_shared_32_way_conflict(counting):
    # word 32 * lane: every lane in bank 0, 32 different words -> 32 wavefronts (store, then load)
    t = probe(SHARED_32WAY)
    assert (t["shared_requests"], t["wavefronts"], t["ideal_wavefronts"]) == (2, 64, 2)


def test_shared_broadcast_is_one_wavefront(counting):
    # lane 0 stores word 0 (1 wavefront); all 32 lanes load word 0: a broadcast, 1 wavefront
    t = probe(BROADCAST)
    assert (t["shared_requests"], t["wavefronts"]) == (2, 2)
    # and the global side: lane 0 alone reads in[0] (1 sector, 4 bytes used)
    assert (t["load_requests"], t["load_sectors"], t["load_bytes_used"]) == (1, 1, 4)


def test_shared_padded_column_is_conflict_free(counting):
    # word 33 * lane lands in bank lane: 32 banks, 1 wavefront per request
    t = probe(PADDED)
    assert (t["shared_requests"], t["wavefronts"]) == (2, 2)


def test_shared_16_byte_accesses_in_four_phases(counting):
    # 16-byte accesses go in 4 phases of 8 lanes; 8 lanes x 16 contiguous bytes cover the 32
    # banks once: 4 wavefronts per request, the minimum
    t = probe(SHARED16)
    assert (t["shared_requests"], t["wavefronts"], t["ideal_wavefronts"]) == (2, 8, 8)
    # lane l at byte 32 * l: a phase's 8 lanes span 256 bytes, each bank used twice -> 2 ways
    t = probe(SHARED16_STRIDE2)
    assert (t["shared_requests"], t["wavefronts"], t["ideal_wavefronts"]) == (2, 16, 8)


def test_cp_async_counts_its_global_read_and_shared_write(counting):
    t = probe(CP_ASYNC)
    assert (t["load_requests"], t["load_sectors"], t["load_bytes_used"]) == (1, 16, 512)
    # the cp.async write (16 bytes per lane, contiguous) and the read back: 4 + 4 wavefronts
    assert (t["shared_requests"], t["wavefronts"], t["ideal_wavefronts"]) == (2, 8, 8)


def test_a_real_kernel_reads_at_least_its_inputs(counting):
    # temporal_pool of (8, 256) fp32 in groups of 8: reads 8 KiB and writes 1 KiB at least;
    # the counters name the kernel launched
    x = torch.randn(8, 256)
    nk.temporal_pool(x, 8, backend="emu")
    totals = _C.emu_traffic_take()
    assert len(totals) == 1
    ((name, t),) = totals.items()
    assert "temporal_pool" in name
    assert t["load_bytes_used"] >= x.numel() * 4
    assert t["store_bytes_used"] >= 256 * 4
    assert t["load_sectors"] * 32 >= t["load_bytes_used"]

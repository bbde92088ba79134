"""Which weight type int8 quantisation picks for the CPU it runs on."""

from __future__ import annotations

import pytest

from features.embed_onnx import weights_unsigned


@pytest.mark.parametrize("flags,unsigned", [
    ("fpu sse2 avx avx2 fma", True),  # AVX2 alone: uint8 x int8 kernels saturate
    ("fpu sse2 avx avx2 avx512f avx512_vnni", False),
    ("fpu sse2 avx avx2 avx_vnni", False),
    ("fp asimd asimddp", False),  # Arm: onnxruntime's defaults
])
def test_weights_are_unsigned_only_on_x86_without_vnni(tmp_path, flags, unsigned):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert weights_unsigned(info) is unsigned


def test_no_cpuinfo_keeps_the_defaults(tmp_path):
    assert weights_unsigned(tmp_path / "missing") is False

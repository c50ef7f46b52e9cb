#!/usr/bin/env python3
"""PyTorch GEMM peer for `--suite probe-gemm`: cuBLAS on the same card and square size, the CUDA
counterpart of the WGSL GEMM roofs (f16 with f32 accumulation, and f32 with TF32 off).

usage:  python3 torch_gemm.py [n]        prints one markdown row per GEMM
"""
import os
import sys

import torch

# The same timing as the attention peer: sustained warm-up, CUDA events, the median.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_sdpa import time_ms  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False

print(f"device: {torch.cuda.get_device_name()} | torch {torch.__version__} | n = {n}")
print("| GEMM (cuBLAS via torch.matmul) | time (ms) | TFLOP/s |")
print("|---|---|---|")
for name, dtype in [("f16 in, f32 accumulate", torch.float16), ("f32 (TF32 off)", torch.float32)]:
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    c = torch.empty(n, n, device="cuda", dtype=dtype)
    ms = time_ms(lambda: torch.matmul(a, b, out=c), warmup_s=1.0)
    print(f"| {name} | {ms:.4f} | {2 * n ** 3 / (ms * 1e-3) / 1e12:.1f} |")

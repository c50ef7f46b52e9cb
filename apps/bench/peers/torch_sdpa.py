#!/usr/bin/env python3
"""PyTorch peer for webinfer's bench: times torch scaled_dot_product_attention (CUDA) on the same
decode and prefill shapes, KV contiguous (the CUDA reference point, not a paged kernel).

stdin:  JSON list of cases {name, batch, kvLen, numQoHeads, numKvHeads, headDim, kvDtype,
        qoLen? (query rows per request, default 1), causal? (bottom-right)}
stdout: JSON {device, torch, results: [{name, timeMs, gbs, note}]}
Exit code 2 when torch or a CUDA GPU is missing (the bench then runs alone).
"""
import json
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print(json.dumps({"error": "torch is not installed"}))
    sys.exit(2)

if not torch.cuda.is_available():
    print(json.dumps({"error": "no CUDA device"}))
    sys.exit(2)


def time_ms(fn, iters=50, warmup_s=0.3):
    # Sustained warm-up so the GPU clocks are up, as the WebGPU side does.
    t0 = time.time()
    while time.time() - t0 < warmup_s:
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    cases = json.load(sys.stdin)
    results = []
    for c in cases:
        B, L = c["batch"], c["kvLen"]
        hq, hkv, d = c["numQoHeads"], c["numKvHeads"], c["headDim"]
        note = ""
        if c.get("kvDtype", "f16") != "f16":
            note = "SDPA has no %s KV; timed with f16 KV" % c["kvDtype"]
        dev = "cuda"
        qo = c.get("qoLen", 1)
        causal = bool(c.get("causal", False)) and qo > 1
        q = torch.randn(B, hq, qo, d, dtype=torch.float16, device=dev)
        k = torch.randn(B, hkv, L, d, dtype=torch.float16, device=dev)
        v = torch.randn(B, hkv, L, d, dtype=torch.float16, device=dev)
        gqa = hq != hkv
        if causal and qo == L:
            fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        elif causal:
            # SDPA's is_causal is top-left aligned; bottom-right (append) needs an explicit mask.
            keep = torch.ones(qo, L, dtype=torch.bool, device=dev).tril(diagonal=L - qo)
            fn = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=keep, enable_gqa=gqa)
            note = (note + "; " if note else "") + "bottom-right causal as an explicit mask"
        else:
            fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
        ms = time_ms(fn, iters=20 if qo > 1 else 50)
        nbytes = B * L * hkv * d * 2 * 2 + 2 * B * qo * hq * d * 2
        results.append({"name": c["name"], "timeMs": ms, "gbs": nbytes / (ms * 1e-3) / 1e9, "note": note})
        del q, k, v
        torch.cuda.empty_cache()
    print(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "results": results}))


if __name__ == "__main__":
    main()

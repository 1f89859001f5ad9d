#!/usr/bin/env python3
"""PyTorch peer of `nava bench gemm` and `nava bench attention`: torch.matmul and
torch.nn.functional.scaled_dot_product_attention throughput, seeded inputs, timed like nava (one warm-up, then
whole calls with a device wait until --seconds have passed).

  gemm_attn.py gemm --m M --n N --k K         y = x·Wᵀ, x [M, K], W [N, K] (nava's layout); FLOPs 2·M·N·K
  gemm_attn.py attention --heads H --lq LQ --lk LK --head-dim D     non-causal, scale 1/√D; FLOPs 4·LQ·LK·D·H
  gemm_attn.py all [--tokens L]               the DiT GEMMs of NAVA.md §10.1 and the attentions of §10.2 with
                                              L tokens per pass (default 32,712: 704×1280, 37 latent frames)

Each run prints one line per shape; the last line is the headline `GFLOP/s: N` (for `all`: total FLOPs over
total time of the shapes run).

  python3 gemm_attn.py gemm --m 1024 --n 1024 --k 1024                       # CPU, float32
  python3 gemm_attn.py gemm --m 4096 --n 4096 --k 4096 --device cuda --dtype bf16
  python3 gemm_attn.py attention --heads 24 --lq 32712 --lk 512 --head-dim 128 --device cuda --dtype bf16
"""

import argparse
import time

import torch
import torch.nn.functional as F

DIM, HEADS, HEAD_DIM, FFN, TEXT_LEN = 3072, 24, 128, 14336, 512


def dit_gemms(L, video, audio):
    """(name, M, N, K) of the per-pass DiT GEMMs (NAVA.md §10.1, written M × K × N there)."""
    return [
        ("video patch embed", video, DIM, 192),
        ("block Q/K/V/O", L, DIM, DIM),
        ("block Q/K/V/O (audio rows)", audio, DIM, DIM),
        ("cross-attn K/V of the context", TEXT_LEN, DIM, DIM),
        ("FFN up", L, FFN, DIM),
        ("FFN down", L, DIM, FFN),
        ("video head", video, 192, DIM),
    ]


def dit_attentions(L, video, audio):
    """(name, heads, Lq, Lk, head_dim) of NAVA.md §10.2."""
    return [
        ("joint self-attention", HEADS, L, L, HEAD_DIM),
        ("text cross-attention", HEADS, L, TEXT_LEN, HEAD_DIM),
        ("audio text cross-attention", HEADS, audio, TEXT_LEN, HEAD_DIM),
    ]


class Runner:
    def __init__(self, device, dtype, seconds):
        self.dev, self.dtype, self.seconds = device, dtype, seconds
        self.cuda = device.type == "cuda"
        self.total_flops = self.total_s = 0.0

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize(self.dev)

    def seeded(self, seed, *shape):
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(*shape, generator=g) * 2 - 1).to(self.dev, self.dtype)

    def time(self, label, flops, f):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.dev)
        with torch.inference_mode():
            f()
            self.sync()
            iters, start = 0, time.perf_counter()
            while iters < 2 or time.perf_counter() - start < self.seconds:
                f()
                self.sync()
                iters += 1
            per = (time.perf_counter() - start) / iters
        peak = f", peak GPU memory {torch.cuda.max_memory_allocated(self.dev) / 2**20:.1f} MiB" if self.cuda else ""
        print(f"{label}: {iters} iterations, {per * 1e3:.3f} ms each, {flops / per / 1e9:.2f} GFLOP/s{peak}",
              flush=True)
        self.total_flops += flops
        self.total_s += per
        return flops / per / 1e9

    def gemm(self, m, n, k, name=""):
        x, w = self.seeded(1, m, k), self.seeded(2, n, k)
        label = f"gemm {m}x{n}x{k} {dtype_name(self.dtype)}" + (f" ({name})" if name else "")
        r = self.time(label, 2.0 * m * n * k, lambda: torch.matmul(x, w.t()))
        del x, w
        return r

    def attention(self, heads, lq, lk, d, name=""):
        q = self.seeded(3, 1, heads, lq, d)
        k, v = self.seeded(4, 1, heads, lk, d), self.seeded(5, 1, heads, lk, d)
        label = f"attention h{heads} lq{lq} lk{lk} d{d} {dtype_name(self.dtype)}" + (f" ({name})" if name else "")
        r = self.time(label, 4.0 * lq * lk * d * heads, lambda: F.scaled_dot_product_attention(q, k, v))
        del q, k, v
        return r


def dtype_name(dt):
    return {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}[dt]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("op", nargs="?", choices=["gemm", "attention", "all"], default="all")
    p.add_argument("--m", type=int, default=1024)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--heads", type=int, default=HEADS)
    p.add_argument("--lq", type=int, default=1024)
    p.add_argument("--lk", type=int, default=1024)
    p.add_argument("--head-dim", type=int, default=HEAD_DIM)
    p.add_argument("--tokens", type=int, default=32712, help="tokens per pass for `all`")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    p.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds to measure each shape for")
    p.add_argument("--tf32", action="store_true", help="allow TF32 tensor cores for f32 on CUDA")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    a = p.parse_args()

    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
    dev = torch.device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    if dev.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(dev)} — torch {torch.__version__}, CUDA {torch.version.cuda}"
              + (", TF32 on" if a.tf32 else ""))
    else:
        print(f"device: cpu — torch {torch.__version__}, {torch.get_num_threads()} threads")
    r = Runner(dev, dtype, a.seconds)
    if a.op == "gemm":
        print(f"GFLOP/s: {r.gemm(a.m, a.n, a.k):.2f}")
    elif a.op == "attention":
        print(f"GFLOP/s: {r.attention(a.heads, a.lq, a.lk, a.head_dim):.2f}")
    else:
        audio = max(a.tokens * 152 // 32712, 1)
        video = max(a.tokens - audio, 1)
        L = video + audio
        for name, m, n, k in dit_gemms(L, video, audio):
            r.gemm(m, n, k, name)
        for name, h, lq, lk, d in dit_attentions(L, video, audio):
            r.attention(h, lq, lk, d, name)
        print(f"GFLOP/s: {r.total_flops / r.total_s / 1e9:.2f}")


if __name__ == "__main__":
    main()

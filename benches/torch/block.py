#!/usr/bin/env python3
"""PyTorch peer of `nava bench block`: one NAVA DiT block at full width, seeded weights, timed forwards.

The block is the one `nava bench block --kind double|single --tokens L` runs (NAVA.md §4.3, §4.4), in plain
PyTorch ops:

  h  = LN(x)(1 + c1) + s1                         adaLN (LayerNorm without affine, eps 1e-6), per modality
  q, k, v = RMS(h Wq + bq), RMS(h Wk + bk), h Wv + bv    RMS-norm over the whole width, 24 heads x 128
  q, k ← RoPE (interleaved pairs; video 3-D frame/row/column groups, audio 1-D with ω · 0.24)
  x += (SDPA(q, k, v) Wo + bo) ⊙ g1               joint self-attention over video ‖ audio rows
  x += CrossAttn(LN3(x), ctx)                     512-token text context, its K/V projected once outside
                                                  the timed loop (as in generation), no gate
  x += (GELUtanh((LN(x)(1 + c2) + s2) W1 + b1) W2 + b2) ⊙ g2    FFN 3072 → 14336 → 3072

A double block has per-modality Q/K/V/O, QK norms, cross-attention and modulation tables, and a shared norm3 and
FFN; a single block shares every weight. Rows are split as in `nava bench block`: about 0.5 % audio, the video
rows laid out as a grid of 80-token rows.

Prints, like `nava bench block`: the device, `<label>: N iterations, T ms each`, peak memory, GFLOP/s (the same
FLOP count as nava: linear layers + 4·L²·d + 4·L·512·d), and last `tokens/s: N`.

  python3 block.py --kind double --tokens 64                      # CPU, float32
  python3 block.py --kind double --tokens 4096 --device cuda --dtype bf16
"""

import argparse
import math
import resource
import sys
import time

import torch
import torch.nn.functional as F

DIM, HEADS, HEAD_DIM, FFN, TEXT_LEN, EPS = 3072, 24, 128, 14336, 512, 1e-6
THETA, AUDIO_ROPE_SCALE, ROW = 10000.0, 0.24, 80


def split_rows(tokens):
    """(video grid [f, h, w], audio rows): about 0.5 % audio; video as whole 80-token rows when it can."""
    avail = max(tokens - max(tokens // 200, 1), 1)
    f = max(-(-avail // (1024 * ROW)), 1)
    h = avail // (f * ROW)
    grid = [1, 1, avail] if h == 0 else [f, h, ROW]
    video = grid[0] * grid[1] * grid[2]
    return grid, max(tokens - video, 1)


def rope_tables(grid, audio, device):
    """cos, sin of shape [L, 64] (float64 angles), video rows then audio rows (NAVA.md §4.6)."""
    pairs = HEAD_DIM // 2
    groups = [pairs - 2 * (pairs // 3), pairs // 3, pairs // 3]

    def omegas(n, scale=1.0):
        return scale / THETA ** (torch.arange(n, dtype=torch.float64) * 2 / (2 * n))

    f, h, w = grid
    r = torch.arange(f * h * w)
    pos = [r // (h * w), (r // w) % h, r % w]
    video = torch.cat([pos[g].double()[:, None] * omegas(n)[None, :] for g, n in enumerate(groups)], dim=1)
    p = torch.arange(audio, dtype=torch.float64)
    aud = torch.cat([p[:, None] * omegas(groups[0], AUDIO_ROPE_SCALE)[None, :],
                     torch.zeros(audio, pairs - groups[0], dtype=torch.float64)], dim=1)
    ang = torch.cat([video, aud], dim=0)
    return ang.cos().to(device), ang.sin().to(device)


def rope(x, cos, sin):
    """Rotates adjacent pairs (x[2i], x[2i+1]) of every head; x [L, dim]."""
    L = x.shape[0]
    xp = x.view(L, HEADS, HEAD_DIM // 2, 2)
    a, b = xp[..., 0], xp[..., 1]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).view(L, DIM)


def rms(x, w):
    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (DIM,), w, EPS)
    return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + EPS).to(x.dtype) * w


def ln(x):
    return F.layer_norm(x, (DIM,), eps=EPS)


def heads(x):
    """[L, dim] → [1, heads, L, head_dim] for SDPA."""
    return x.view(1, x.shape[0], HEADS, HEAD_DIM).transpose(1, 2)


def merge(o):
    return o.transpose(1, 2).reshape(o.shape[2], DIM)


class Seeded:
    """Seeded weights, scaled like a trained layer (1/√fan_in) so activations stay finite across iterations."""

    def __init__(self, seed, device, dtype):
        self.g = torch.Generator().manual_seed(seed)
        self.device, self.dtype = device, dtype

    def t(self, *shape, scale=1.0):
        return (torch.randn(*shape, generator=self.g) * scale).to(self.device, self.dtype)

    def linear(self, out, inp):
        return self.t(out, inp, scale=1 / math.sqrt(inp)), self.t(out, scale=0.01)

    def attn(self):
        a = {n: self.linear(DIM, DIM) for n in "qkvo"}
        a["norm_q"], a["norm_k"] = 1 + self.t(DIM, scale=0.1), 1 + self.t(DIM, scale=0.1)
        return a


class Block:
    def __init__(self, kind, seed, device, dtype):
        s = Seeded(seed, device, dtype)
        n = 2 if kind == "double" else 1  # [video, audio] weights, or one set for both
        self.kind = kind
        self.self_attn = [s.attn() for _ in range(n)]
        self.cross_attn = [s.attn() for _ in range(n)]
        self.modulation = [s.t(6, DIM, scale=0.1) for _ in range(n)]
        self.norm3 = (1 + s.t(DIM, scale=0.1), s.t(DIM, scale=0.01))
        self.ffn = [s.linear(FFN, DIM), s.linear(DIM, FFN)]

    def cross_kv(self, ctx):
        """Text keys and values, once per generation (outside the timed loop, as in nava)."""
        out = []
        for a in self.cross_attn:
            k = rms(F.linear(ctx, *a["k"]), a["norm_k"])
            out.append((heads(k), heads(F.linear(ctx, *a["v"]))))
        return out

    def forward(self, x, segs, e0, cos, sin, kv):
        """x [L, dim] updated in place; segs: [(row range, weight index)]."""
        m = [t + e0 for t in self.modulation]  # [6, dim]: shift, scale, gate of attention, then of the FFN
        h = torch.empty_like(x)
        for r, i in segs:
            h[r] = ln(x[r]) * (1 + m[i][1]) + m[i][0]
        q, k, v = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
        for r, i in segs:
            a = self.self_attn[i]
            q[r] = rms(F.linear(h[r], *a["q"]), a["norm_q"])
            k[r] = rms(F.linear(h[r], *a["k"]), a["norm_k"])
            v[r] = F.linear(h[r], *a["v"])
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        o = merge(F.scaled_dot_product_attention(heads(q), heads(k), heads(v)))
        for r, i in segs:
            x[r] += F.linear(o[r], *self.self_attn[i]["o"]) * m[i][2]
        n = F.layer_norm(x, (DIM,), *self.norm3, eps=EPS)
        for r, i in segs:
            a = self.cross_attn[i]
            cq = heads(rms(F.linear(n[r], *a["q"]), a["norm_q"]))
            x[r] += F.linear(merge(F.scaled_dot_product_attention(cq, *kv[i])), *a["o"])
        for r, i in segs:
            h[r] = ln(x[r]) * (1 + m[i][4]) + m[i][3]
        f = F.gelu(F.linear(h, *self.ffn[0]), approximate="tanh")
        for r, i in segs:
            x[r] += F.linear(f[r], *self.ffn[1]) * m[i][5]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kind", choices=["double", "single"], default="double")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    p.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds to measure for (after one warm-up)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 tensor cores for f32 matmuls on CUDA")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    a = p.parse_args()

    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    if cuda:
        name = torch.cuda.get_device_name(dev)
        print(f"device: {name} — torch {torch.__version__}, CUDA {torch.version.cuda}")
    else:
        print(f"device: cpu — torch {torch.__version__}, {torch.get_num_threads()} threads")

    grid, audio = split_rows(a.tokens)
    video = grid[0] * grid[1] * grid[2]
    L = video + audio
    block = Block(a.kind, 7, dev, dtype)
    s = Seeded(10, dev, dtype)
    x = s.t(L, DIM)
    ctx = s.t(TEXT_LEN, DIM)
    e0 = s.t(6, DIM, scale=0.1)
    cos, sin = (t.to(dtype) for t in rope_tables(grid, audio, dev))
    if a.kind == "double":
        segs = [(slice(0, video), 0), (slice(video, L), 1)]
    else:
        segs = [(slice(0, L), 0)]  # one weight set and one modulation: both modalities in one pass

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    with torch.inference_mode():
        kv = block.cross_kv(ctx)
        if cuda:
            sync()
            torch.cuda.reset_peak_memory_stats(dev)
        block.forward(x, segs, e0, cos, sin, kv)  # warm-up
        sync()
        iters, start = 0, time.perf_counter()
        while iters < 1 or time.perf_counter() - start < a.seconds:
            block.forward(x, segs, e0, cos, sin, kv)
            sync()
            iters += 1
        per = (time.perf_counter() - start) / iters

    if not torch.isfinite(x).all():
        print("warning: non-finite activations", file=sys.stderr)
    linear = 2.0 * L * (6.0 * DIM * DIM + 2.0 * DIM * FFN)
    attn = 4.0 * L * L * DIM + 4.0 * L * TEXT_LEN * DIM
    label = f"{a.kind.capitalize()} block d{DIM} L{L} {a.dtype} (torch, {video} video + {audio} audio rows)"
    print(f"{label}: {iters} iterations, {per * 1e3:.3f} ms each")
    if cuda:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(dev) / 2**20:.1f} MiB")
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"peak host memory (process RSS): {rss:.1f} MiB")
    print(f"GFLOP/s: {(linear + attn) / per / 1e9:.2f}")
    print(f"tokens/s: {a.tokens / per:.2f}")


if __name__ == "__main__":
    main()

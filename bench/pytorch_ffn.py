#!/usr/bin/env python3
"""bench/pytorch_ffn.py — the PyTorch peer for `ffnlab bench --ffn-only`.

One feedforward layer alone at the study's shape (d=256, 16x256 tokens, fp32),
forward and forward+backward, median of --reps timed runs after warm-up:
- dense: Linear(256, 4096), GELU (tanh), Linear(4096, 256)
- moe:   4 experts of 1023, top-1 softmax router, tokens sorted by expert
         (each expert multiplies only its own tokens), GELU, as ffn_moe
- pkm:   4 heads, 56x56 product keys, k_dim 256, knn 14, batch-normed
         queries, values read by EmbeddingBag with the softmax weights
         (Lample et al. 2019), as ffn_pkm
Not part of the tests; run through bench/compare.sh --ffn, which gives
Debian's python3-torch OpenBLAS (see there). --device cuda runs the same on a
GPU (scripts/gpu-check.sh does, beside `ffnlab bench --ffn-only --device
cuda`): the study's setting, where sparse layers were found slower than dense.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

D = 256


class Dense(nn.Module):
    def __init__(self, d_ff=4096):
        super().__init__()
        self.fc, self.proj = nn.Linear(D, d_ff), nn.Linear(d_ff, D)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class MoE(nn.Module):
    def __init__(self, experts=4, d_expert=1023):
        super().__init__()
        self.router = nn.Linear(D, experts, bias=False)
        self.experts = nn.ModuleList(Dense(d_expert) for _ in range(experts))

    def forward(self, x):
        gate, idx = self.router(x).softmax(-1).max(-1)  # top-1
        order = idx.argsort()
        counts = torch.bincount(idx, minlength=len(self.experts)).tolist()
        out = torch.zeros_like(x)
        start = 0
        for e, n in enumerate(counts):
            rows = order[start:start + n]
            start += n
            if n:
                out.index_add_(0, rows, self.experts[e](x[rows]) * gate[rows, None])
        return out


class PKM(nn.Module):
    def __init__(self, heads=4, n_keys=56, k_dim=256, knn=14):
        super().__init__()
        self.heads, self.n_keys, self.k_dim, self.knn = heads, n_keys, k_dim, knn
        self.query = nn.Linear(D, heads * k_dim)
        self.bn = nn.BatchNorm1d(heads * k_dim)
        self.keys = nn.Parameter(torch.randn(heads, 2, n_keys, k_dim // 2) / (k_dim // 2) ** 0.5)
        self.values = nn.EmbeddingBag(n_keys * n_keys, D, mode="sum")
        nn.init.normal_(self.values.weight, std=D ** -0.5)

    def forward(self, x):
        N = x.shape[0]
        q = self.bn(self.query(x)).view(N, self.heads, 2, self.k_dim // 2)
        s = torch.einsum("nhtk,htmk->nhtm", q, self.keys)  # [N, heads, 2, n_keys]
        s1, i1 = s[:, :, 0].topk(self.knn, -1)
        s2, i2 = s[:, :, 1].topk(self.knn, -1)
        all_s = (s1[..., :, None] + s2[..., None, :]).flatten(-2)  # [N, heads, knn*knn]
        all_i = (i1[..., :, None] * self.n_keys + i2[..., None, :]).flatten(-2)
        best, j = all_s.topk(self.knn, -1)
        ids = all_i.gather(-1, j).view(N * self.heads, self.knn)
        w = best.softmax(-1).view(N * self.heads, self.knn)
        return self.values(ids, per_sample_weights=w).view(N, self.heads, D).sum(1)


def time_ms(fn, reps, sync):
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()  # a GPU runs asynchronously: time whole calls
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=16 * 256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (fp32; TF32 tensor cores as ffnlab's default)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        sync = torch.cuda.synchronize
        where = torch.cuda.get_device_name(dev)
    else:
        sync = lambda: None  # noqa: E731
        where = f"{a.threads} threads"
    x = torch.randn(a.tokens, D, device=dev)
    print(f"pytorch {torch.__version__} FFN alone, d={D}, {a.tokens} tokens, {where}, median of {a.reps}")
    for name, layer in (("dense:d_ff=4096", Dense()), ("moe:experts=4,d_expert=1023,top_k=1", MoE()),
                        ("pkm:heads=4,n_keys=56,k_dim=256,knn=14", PKM())):
        layer = layer.to(dev)
        with torch.no_grad():
            fwd = time_ms(lambda: layer(x), a.reps, sync)
        xg = x.clone().requires_grad_()

        def step():
            layer.zero_grad(set_to_none=True)
            layer(xg).sum().backward()
        both = time_ms(step, a.reps, sync)
        print(f"  pytorch {name:40s} forward {fwd:8.2f} ms   fwd+bwd {both:8.2f} ms")


if __name__ == "__main__":
    main()

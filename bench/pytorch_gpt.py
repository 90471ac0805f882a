#!/usr/bin/env python3
"""bench/pytorch_gpt.py — the PyTorch peer for `ffnlab bench`.

Trains the same GPT-2-style model as `ffnlab bench` (d=256, 4 layers, 4 heads,
context 256, batch 16, vocab 4096, dense GELU FFN, AdamW) with the same threads
and prints tokens/s, so the two can be compared side by side. Not part of the
tests: ffnlab never needs Python. Run it through bench/compare.sh, which points
Debian's python3-torch at OpenBLAS with a core type this CPU can use (out of the
box it uses the reference BLAS, ~45x slower, which would prove nothing).
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.h)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        return x + self.proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, V, T, d, L, h):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, d), nn.Embedding(T, d)
        self.blocks = nn.ModuleList(Block(d, h) for _ in range(L))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    V, T, d, L, h, B = 4096, 256, 256, 4, 4, 16
    model = GPT(V, T, d, L, h)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))
    for step in range(a.steps + 2):
        if step == 2:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model(x, y).backward()
        opt.step()
    tok_s = B * T * a.steps / (time.perf_counter() - t0)
    print(f"pytorch {torch.__version__}: {tok_s:.0f} tokens/s (d={d} L={L} H={h} T={T} B={B} V={V}, {a.threads} threads)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/pytorch_gpt.py — the PyTorch peer for `ffnlab bench`.

Trains the same GPT-2-style model as `ffnlab bench` (d=256, 4 layers, 4 heads,
context 256, batch 16, vocab 4096, dense GELU FFN, AdamW) with the same threads
and prints tokens/s, so the two can be compared side by side. Not part of the
tests: ffnlab never needs Python. Run it through bench/compare.sh, which points
Debian's python3-torch at OpenBLAS with a core type this CPU can use (out of the
box it uses the reference BLAS, ~45x slower, which would prove nothing).
--device cuda --preset gpt2-small --precision bf16 runs GPT-2 small on a GPU
(eager PyTorch, bf16 autocast) beside `ffnlab bench --preset gpt2-small`
(scripts/gpu-check.sh does).
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
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
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
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--preset", choices=("reference", "gpt2-small"), default="reference")
    ap.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32",
                    help="on a GPU: fp32, TF32 matmuls, or bf16 autocast")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    V, T, d, L, h, B = (4096, 256, 256, 4, 4, 16) if a.preset == "reference" else (50257, 1024, 768, 12, 12, 8)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = GPT(V, T, d, L, h).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    x = torch.randint(0, V, (B, T), device=dev)
    y = torch.randint(0, V, (B, T), device=dev)
    for step in range(a.steps + 2):
        if step == 2:
            sync()
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = model(x, y)
        loss.backward()
        opt.step()
    sync()
    tok_s = B * T * a.steps / (time.perf_counter() - t0)
    where = torch.cuda.get_device_name(dev) + ", " + a.precision if cuda else f"{a.threads} threads"
    print(f"pytorch {torch.__version__}: {tok_s:.0f} tokens/s (d={d} L={L} H={h} T={T} B={B} V={V}, {where})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes tests/fixtures/gpt_reference.safetensors, the reference the C model is checked against.

This is an independent PyTorch implementation of ffnlab's dense model (GPT-2, pre-LayerNorm),
written by hand from the definition, not from the C code and not with nn.Transformer or
Hugging Face:

    x = wte[tok] + wpe[pos]
    per block:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
    logits = ln_f(x) @ wte.T            (tied embedding)
    loss = mean cross-entropy over all B*T positions

LayerNorm has eps 1e-5 and weight + bias. Attention: qkv = h @ c_attn.weight + c_attn.bias
with the Conv1D layout [in, out] = [C, 3C]; q | k | v are consecutive blocks of C columns, each
split into H heads of C/H; causal softmax(q k^T / sqrt(C/H)); the heads are concatenated and
projected by c_proj.weight [C, C] + bias. MLP: gelu_tanh(x @ c_fc.weight [C,4C] + b) @
c_proj.weight [4C,C] + b with the tanh form of GELU.

The weights are random float32 values with deliberately large scales (std 0.2-0.3, LayerNorm
weights 1 + noise, non-zero biases), so a transposed weight, an erf GELU, a missing attention
scale or a leaky causal mask all move the logits far beyond fp32 tolerance (checked below).
The forward and backward are computed in float64 from those float32 values and only then
rounded to float32, so the fixture holds the exact math of the float32 weights.

The fixture also records GPT-2's initialisation rule (as Hugging Face GPT2 and nanoGPT apply
it: Linear/Conv1D and Embedding weights normal(0, 0.02), residual output projections c_proj
normal(0, 0.02/sqrt(2L)), biases 0, LayerNorm weight 1 and bias 0) as the empirical mean and
std of every parameter of a larger init-only model, so the C test can catch a wrong init
scale or a missing 1/sqrt(2L) statistically.

The file is written by hand (u64 LE header length, JSON header padded with spaces to 8 bytes,
raw little-endian data), so no safetensors package is needed. Before writing, the script
verifies itself: torch.autograd.gradcheck of the float64 loss, the hand-written loss against
F.cross_entropy, the whole forward against a second implementation built from torch's own
layer_norm / gelu / softmax, and the sensitivity to the mistakes listed above.

Usage (from the repository root):
    python3 tests/reference/make_gpt_reference.py [--out PATH] [--no-check]
"""

import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

# The tiny model the fixture holds (must match tests/test_reference.c).
CFG = dict(vocab_size=64, context=8, d_model=16, n_layers=2, n_heads=2, batch=3)
# The init-only model whose statistics are recorded. C=128 keeps the sampling noise of the
# smallest normal matrix (128x128) near 0.55% of its std, far inside the test's 5% band.
INIT_CFG = dict(vocab_size=256, context=64, d_model=128, n_layers=4, n_heads=4)
SEED = 20240611
INIT_SEED = 7
EPS = 1e-5
# The tolerance tests/test_reference.c applies to the logits.
C_TEST_RTOL, C_TEST_ATOL = 2e-5, 1e-5


def param_shapes(cfg):
    """Parameter names and shapes in GPT-2 order and layout."""
    V, T, C, L = cfg["vocab_size"], cfg["context"], cfg["d_model"], cfg["n_layers"]
    out = [("transformer.wte.weight", (V, C)), ("transformer.wpe.weight", (T, C))]
    for i in range(L):
        p = "transformer.h.%d." % i
        out += [
            (p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
            (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
            (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
            (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
            (p + "mlp.c_fc.weight", (C, 4 * C)), (p + "mlp.c_fc.bias", (4 * C,)),
            (p + "mlp.c_proj.weight", (4 * C, C)), (p + "mlp.c_proj.bias", (C,)),
        ]
    out += [("transformer.ln_f.weight", (C,)), ("transformer.ln_f.bias", (C,))]
    return out


def make_test_params(cfg, gen):
    """Random float32 weights with scales large enough that layout errors show."""
    params = {}
    for name, shape in param_shapes(cfg):
        r = torch.randn(shape, generator=gen, dtype=torch.float32)
        if name.endswith(("wte.weight", "wpe.weight")):
            v = 0.3 * r
        elif ".ln_" in name and name.endswith(".weight"):
            v = 1.0 + 0.1 * r
        elif ".ln_" in name:                       # LayerNorm bias
            v = 0.1 * r
        elif name.endswith(".bias"):
            v = 0.1 * r
        else:                                      # c_attn / c_proj / c_fc weights
            v = 0.2 * r
        params[name] = v.contiguous()
    return params


# ---- the model, by hand ---------------------------------------------------------------

def layer_norm(x, w, b):
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)   # biased variance, as GPT-2
    return (x - mu) / torch.sqrt(var + EPS) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def attention(h, p, pre, n_heads, causal=True, scale=True, transpose_w=False):
    B, T, C = h.shape
    hs = C // n_heads
    qkv = h @ p[pre + "c_attn.weight"] + p[pre + "c_attn.bias"]          # [B,T,3C]
    q, k, v = qkv.split(C, dim=-1)
    q = q.view(B, T, n_heads, hs).transpose(1, 2)                        # [B,H,T,hs]
    k = k.view(B, T, n_heads, hs).transpose(1, 2)
    v = v.view(B, T, n_heads, hs).transpose(1, 2)
    att = q @ k.transpose(-2, -1)
    if scale:
        att = att / math.sqrt(hs)
    if causal:
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        att = att.masked_fill(mask, float("-inf"))
    att = torch.exp(att - att.amax(dim=-1, keepdim=True))
    att = att / att.sum(dim=-1, keepdim=True)
    y = (att @ v).transpose(1, 2).reshape(B, T, C)
    w = p[pre + "c_proj.weight"]
    return y @ (w.t() if transpose_w else w) + p[pre + "c_proj.bias"]


def mlp(h, p, pre, act=gelu_tanh):
    a = act(h @ p[pre + "c_fc.weight"] + p[pre + "c_fc.bias"])
    return a @ p[pre + "c_proj.weight"] + p[pre + "c_proj.bias"]


def forward(p, tokens, cfg, **variant):
    """Logits [B,T,V] of the hand-written model. `variant` injects known mistakes."""
    B, T = tokens.shape
    x = p["transformer.wte.weight"][tokens] + p["transformer.wpe.weight"][:T]
    for i in range(cfg["n_layers"]):
        pre = "transformer.h.%d." % i
        x = x + attention(layer_norm(x, p[pre + "ln_1.weight"], p[pre + "ln_1.bias"]), p,
                          pre + "attn.", cfg["n_heads"], causal=variant.get("causal", True),
                          scale=variant.get("scale", True),
                          transpose_w=variant.get("transpose_w", False))
        x = x + mlp(layer_norm(x, p[pre + "ln_2.weight"], p[pre + "ln_2.bias"]), p,
                    pre + "mlp.", act=variant.get("act", gelu_tanh))
    x = layer_norm(x, p["transformer.ln_f.weight"], p["transformer.ln_f.bias"])
    return x @ p["transformer.wte.weight"].t()


def cross_entropy(logits, targets):
    flat = logits.reshape(-1, logits.shape[-1])
    lse = torch.logsumexp(flat, dim=-1)
    picked = flat.gather(1, targets.reshape(-1, 1)).squeeze(1)
    return (lse - picked).mean()


# ---- a second implementation from torch's own building blocks, for the self-check --------

def forward_builtin(p, tokens, cfg):
    B, T = tokens.shape
    C, H = cfg["d_model"], cfg["n_heads"]
    hs = C // H
    x = F.embedding(tokens, p["transformer.wte.weight"]) + p["transformer.wpe.weight"][:T]
    for i in range(cfg["n_layers"]):
        pre = "transformer.h.%d." % i
        h = F.layer_norm(x, (C,), p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], eps=EPS)
        # F.linear wants [out, in]: the Conv1D [in, out] weight transposed.
        qkv = F.linear(h, p[pre + "attn.c_attn.weight"].t(), p[pre + "attn.c_attn.bias"])
        heads = []
        for hd in range(H):                         # one head at a time, explicit loops
            q = qkv[..., hd * hs:(hd + 1) * hs]
            k = qkv[..., C + hd * hs:C + (hd + 1) * hs]
            v = qkv[..., 2 * C + hd * hs:2 * C + (hd + 1) * hs]
            s = torch.einsum("btd,bsd->bts", q, k) / math.sqrt(hs)
            s = s + torch.full((T, T), float("-inf"), dtype=s.dtype).triu(1)
            heads.append(torch.einsum("bts,bsd->btd", F.softmax(s, dim=-1), v))
        y = torch.cat(heads, dim=-1)
        x = x + F.linear(y, p[pre + "attn.c_proj.weight"].t(), p[pre + "attn.c_proj.bias"])
        h = F.layer_norm(x, (C,), p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], eps=EPS)
        a = F.gelu(F.linear(h, p[pre + "mlp.c_fc.weight"].t(), p[pre + "mlp.c_fc.bias"]),
                   approximate="tanh")
        x = x + F.linear(a, p[pre + "mlp.c_proj.weight"].t(), p[pre + "mlp.c_proj.bias"])
    x = F.layer_norm(x, (C,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], eps=EPS)
    return F.linear(x, p["transformer.wte.weight"])


def self_check(p64, tokens, targets, cfg, logits, loss):
    """Fails (exits) unless the reference agrees with itself and is sensitive to mistakes."""
    ok = True

    def report(what, value, good):
        nonlocal ok
        print("  %-58s %.3e  %s" % (what, value, "ok" if good else "FAILED"))
        ok = ok and good

    print("self-check:")
    ce = F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), targets.reshape(-1))
    report("|loss - F.cross_entropy|", abs(loss.item() - ce.item()), abs(loss - ce) < 1e-12)
    other = forward_builtin(p64, tokens, cfg)
    d = (other - logits).abs().max().item()
    report("max |logits - builtin-op implementation|", d, d < 1e-12)

    # Every injected mistake must move some logit by far more than the C test's fp32
    # tolerance (|got - want| <= ATOL + RTOL |want|): by at least 10 times.
    erf = lambda x: F.gelu(x)  # noqa: E731
    for what, kw in [("erf GELU instead of tanh", dict(act=erf)),
                     ("transposed attn.c_proj.weight", dict(transpose_w=True)),
                     ("no 1/sqrt(head size) scale", dict(scale=False)),
                     ("no causal mask", dict(causal=False))]:
        d = forward(p64, tokens, cfg, **kw) - logits
        factor = (d.abs() / (C_TEST_ATOL + C_TEST_RTOL * logits.abs())).max().item()
        report("x tolerance, logits with " + what, factor, factor > 10)

    # gradcheck of the float64 loss as a function of every parameter at once.
    names = list(p64.keys())

    def loss_of(*tensors):
        q = dict(zip(names, tensors))
        return cross_entropy(forward(q, tokens, cfg), targets)

    leaves = tuple(p64[n].detach().clone().requires_grad_(True) for n in names)
    good = torch.autograd.gradcheck(loss_of, leaves, eps=1e-6, atol=1e-7, rtol=1e-5,
                                    raise_exception=False)
    report("torch.autograd.gradcheck (float64), failed=%d" % (not good), 0.0, good)
    if not ok:
        sys.exit("make_gpt_reference.py: self-check failed; fixture not written")


# ---- the initialisation rule ----------------------------------------------------------

def init_rule(name, n_layers):
    """GPT-2's init (HF GPT2PreTrainedModel._init_weights / nanoGPT): (kind, std)."""
    if ".ln_" in name:
        return ("ones", 0.0) if name.endswith(".weight") else ("zeros", 0.0)
    if name.endswith(".bias"):
        return ("zeros", 0.0)
    if name.endswith("c_proj.weight"):
        return ("normal", 0.02 / math.sqrt(2 * n_layers))
    return ("normal", 0.02)


def init_stats(cfg, seed):
    """Instantiates the init-only model and returns metadata with its statistics."""
    gen = torch.Generator().manual_seed(seed)
    meta = {"init.config": json.dumps(cfg, sort_keys=True)}
    for name, shape in param_shapes(cfg):
        kind, std = init_rule(name, cfg["n_layers"])
        t = torch.empty(shape, dtype=torch.float32)
        if kind == "normal":
            t.normal_(0.0, std, generator=gen)
        elif kind == "ones":
            t.fill_(1.0)
        else:
            t.zero_()
        t = t.double()
        mean = t.mean().item()
        emp = math.sqrt(((t - mean) ** 2).mean().item())    # population std
        if kind == "normal" and abs(emp / std - 1) > 0.03:
            sys.exit("init model: %s std %.5g far from the rule's %.5g" % (name, emp, std))
        meta["init.kind." + name] = kind
        meta["init.mean." + name] = repr(mean)
        meta["init.std." + name] = repr(emp)
    return meta


# ---- safetensors, by hand ---------------------------------------------------------------

def write_safetensors(path, tensors, meta):
    """tensors: list of (name, torch tensor f32 or i32). meta: dict str -> str."""
    codes = {torch.float32: ("F32", "<f4"), torch.int32: ("I32", "<i4")}
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        code, np_dtype = codes[t.dtype]
        raw = t.detach().contiguous().numpy().astype(np_dtype).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)            # pad with spaces, as the spec allows
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "fixtures", "gpt_reference.safetensors"))
    ap.add_argument("--no-check", action="store_true", help="skip the self-check")
    args = ap.parse_args()

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(SEED)
    cfg = CFG
    B, T, V = cfg["batch"], cfg["context"], cfg["vocab_size"]
    p32 = make_test_params(cfg, gen)
    tokens = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)
    targets = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)

    p64 = {n: t.double().requires_grad_(True) for n, t in p32.items()}
    logits = forward(p64, tokens, cfg)
    loss = cross_entropy(logits, targets)
    loss.backward()
    logits, loss = logits.detach(), loss.detach()

    if not args.no_check:
        self_check({n: t.detach() for n, t in p64.items()}, tokens, targets, cfg, logits, loss)

    tensors = [(n, p32[n]) for n, _ in param_shapes(cfg)]
    tensors += [("ref.tokens", tokens.to(torch.int32)), ("ref.targets", targets.to(torch.int32)),
                ("ref.logits", logits.float()), ("ref.loss", loss.reshape(1).float())]
    tensors += [("grad." + n, p64[n].grad.float()) for n, _ in param_shapes(cfg)]
    meta = {k: str(v) for k, v in cfg.items()}
    meta["generator"] = "tests/reference/make_gpt_reference.py (torch %s)" % torch.__version__
    meta.update(init_stats(INIT_CFG, INIT_SEED))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_safetensors(args.out, tensors, meta)
    print("wrote %s (%d bytes): loss %.6f, %d tensors"
          % (args.out, os.path.getsize(args.out), loss.item(), len(tensors)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The tolerances of the real-shape test in tests/inference/cuda_real_shape_test.cc, measured.

scripts/bf16_tolerance.py does this for the tiny fixture; this is the same
measurement, vectorised with numpy, for the CUDA benchmark's 1.1B shape with a
few layers (hidden 2048, 32/8 heads of 64, FFN 8192, vocab 32000, untied):

    build/bin/inference_write_synthetic_model /tmp/m2 --layers 2
    python3 scripts/bf16_tolerance_real_shape.py /tmp/m2

A float64 forward pass of the bf16 checkpoint, run twice: as the CPU backend
computes (activations unrounded) and rounding to bf16 exactly the activations
the CUDA backend keeps in bf16 (normed GEMM inputs, K after RoPE and V in the
cache, the attention output, SiLU*mul). Both runs are fed the unrounded run's
greedy tokens. Prints, per case, the largest and mean absolute logit
difference, the logits' rms, and how many tokens have a top-2 margin above the
test's threshold and whether any of those flipped. The prompts are the test's:
token i of case c is (c * 1000003 + i * 7919) % 31999 + 1.
"""
import json
import os
import struct
import sys

import numpy as np

D = sys.argv[1] if len(sys.argv) > 1 else "/tmp/m2"
CASES = [(0, 200), (1, 37)]  # (case, prompt length), as in the test
STEPS = 16
MARGIN = float(os.environ.get("MARGIN", "0.05"))


def bf(x):
    """float -> bf16 -> float, round to nearest even (as FloatToBf16)."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return (b & 0xFFFFFFFF).astype(np.uint32).view(np.float32).astype(np.float64)


raw = open(os.path.join(D, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
W = {}
for k, v in hdr.items():
    if k == "__metadata__":
        continue
    s, e = v["data_offsets"]
    assert v["dtype"] == "BF16", v["dtype"]
    u = np.frombuffer(raw, dtype=np.uint16, count=(e - s) // 2, offset=8 + n + s)
    W[k] = (u.astype(np.uint32) << 16).view(np.float32).astype(np.float64).reshape(v["shape"])
del raw
cfg = json.load(open(os.path.join(D, "config.json")))
H, L, eps = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["rms_norm_eps"]
nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
hd = cfg.get("head_dim", H // nq)
V = cfg["vocab_size"]
inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (2 * np.arange(hd // 2) / hd))
lm = W.get("lm_head.weight", W["model.embed_tokens.weight"])


def rms(x, w):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope(v, pos):  # v [T, heads, hd]
    a = np.outer(pos, inv)[:, None, :]
    c, s = np.cos(a), np.sin(a)
    h = hd // 2
    x, y = v[..., :h], v[..., h:]
    return np.concatenate([x * c - y * s, y * c + x * s], -1)


def run(ids, steps, act, force=None):
    r = bf if act else (lambda v: v)
    Kc = [np.zeros((0, nkv, hd)) for _ in range(L)]
    Vc = [np.zeros((0, nkv, hd)) for _ in range(L)]
    toks, out, margins, logits, p = list(ids), [], [], [], 0
    while len(out) < steps:
        new = toks[p:]
        pos = np.arange(p, p + len(new))
        x = W["model.embed_tokens.weight"][new]
        for l in range(L):
            pre = "model.layers.%d." % l
            h = r(rms(x, W[pre + "input_layernorm.weight"]))
            q = (h @ W[pre + "self_attn.q_proj.weight"].T).reshape(len(new), nq, hd)
            k = (h @ W[pre + "self_attn.k_proj.weight"].T).reshape(len(new), nkv, hd)
            v = (h @ W[pre + "self_attn.v_proj.weight"].T).reshape(len(new), nkv, hd)
            q = rope(q, pos)
            Kc[l] = np.concatenate([Kc[l], r(rope(k, pos))])
            Vc[l] = np.concatenate([Vc[l], r(v)])
            g = nq // nkv
            kk = np.repeat(Kc[l], g, axis=1)  # [S, nq, hd]
            vv = np.repeat(Vc[l], g, axis=1)
            sc = np.einsum("thd,shd->hts", q, kk) / np.sqrt(hd)
            mask = np.arange(len(Kc[l]))[None, :] > pos[:, None]
            sc = np.where(mask[None], -np.inf, sc)
            sc = np.exp(sc - sc.max(-1, keepdims=True))
            sc /= sc.sum(-1, keepdims=True)
            att = np.einsum("hts,shd->thd", sc, vv).reshape(len(new), nq * hd)
            x = x + r(att) @ W[pre + "self_attn.o_proj.weight"].T
            h = r(rms(x, W[pre + "post_attention_layernorm.weight"]))
            gg = h @ W[pre + "mlp.gate_proj.weight"].T
            uu = h @ W[pre + "mlp.up_proj.weight"].T
            a = gg / (1 + np.exp(-gg)) * uu
            x = x + r(a) @ W[pre + "mlp.down_proj.weight"].T
        p = len(toks)
        lg = r(rms(x[-1], W["model.norm.weight"])) @ lm.T
        logits.append(lg)
        srt = np.sort(lg)[::-1]
        margins.append(srt[0] - srt[1])
        out.append(int(np.argmax(lg)))
        toks.append(force[len(out) - 1] if force else out[-1])
    return out, margins, logits


print("%s: %d layers, hidden %d, %d/%d heads of %d, vocab %d" % (D, L, H, nq, nkv, hd, V))
for c, length in CASES:
    ids = [(c * 1000003 + i * 7919) % 31999 + 1 for i in range(length)]
    path, margins, ref = run(ids, STEPS, act=False)
    got, _, emu = run(ids, STEPS, act=True, force=path)
    d = np.abs(np.array(ref) - np.array(emu))
    wide = [i for i, m in enumerate(margins) if m > MARGIN]
    flips = sum(path[i] != got[i] for i in wide)
    print("case %d (prompt %d): max |diff| %.4f, mean %.5f, logits rms %.3f; margins min %.4f "
          "median %.4f; %d of %d tokens with margin > %.3f, %d flipped; first tokens %s"
          % (c, length, d.max(), d.mean(), np.sqrt(np.mean(np.array(ref) ** 2)),
             min(margins), float(np.median(margins)), len(wide), STEPS, MARGIN, flips,
             path[:6]))

#!/usr/bin/env python3
"""Regenerate the reference fixture of the OFFICIAL PatchGuard discriminator and loss.

Reference: rohban-lab/PatchGuard (CVPR 2025), ``patchguard.py`` (``Discriminator``, ``AttentionBlock``)
and the ``Loss`` class (``loss.py``; the same code is in ``patchguard_notebook.ipynb``, section "Loss").
That repository is not pip-installable, so the two modules are re-stated below with the same module
tree (hence the same ``state_dict`` names) and the same maths, written from a reading of the official
code (commit 110d129e31686bd27605ffbe844bf9d5d152aa0e):

* ``Discriminator``: ``x + positional_encodings`` -> ``transformer_encoder`` (a Sequential of
  ``AttentionBlock``) -> ``output_layer`` (Sequential(Linear(C, 1))) -> squeeze(-1).
* ``AttentionBlock`` (post-norm): ``a = MHA(x, x, x)`` (``nn.MultiheadAttention``, batch_first,
  dropout p on the attention weights); ``x = layer_norm_1(x + dropout1(a))``;
  ``x = x + dropout2(linear(x))`` with ``linear = Sequential(Linear(C,H), GELU(), Dropout(p), Linear(H,C))``.
  LayerNorm eps is PyTorch's default 1e-5. No second LayerNorm.
* ``Loss.forward(scores, masks, attn_weights)``:
  ``BCE_with_logits(reduction='none').sum(dim=1).mean() + 1 * reg``, with
  ``reg = sum_i coefs[i] * F.kl_div(log(A_i + 1e-8), full_like(A_i, 1/num_patches), reduction='mean')``,
  ``coefs = [0.005, 0.01, 0.05]`` indexed by the POSITION of the layer in the list, ``A_i`` the ViT
  attention map of reg layer i with the class token's row and column removed (``attn[:, :, 1:, 1:]``,
  not renormalised), ``num_patches`` the number of patch tokens. ``reduction='mean'`` averages over
  every element (B * NH * Np * Np), i.e. KL(U || A_row) / Np averaged over rows.

The fixture runs everything in float64 with the modules in eval mode (dropout off; the module is built
with dropout 0.2 as ``PatchGuard`` builds it), on a tiny irregular config, and records the inputs, the
parameters (by their official names), logits, BCE, each layer's KL, the total loss, and the gradients of
the total loss w.r.t. the features, every discriminator parameter and each full attention map (B, NH, N, N)
(zero on the class token's row and column).

Output: ``Tests/PatchGuardNNTests/Fixtures/patchguard_official_discriminator.safetensors`` (all F64):

* ``discriminator.<name>``: every parameter, official names;
* ``ref.features`` (B, Np, C), ``ref.labels`` (B, Np), ``ref.attn.<i>`` (B, NH, N, N), i = 0, 1, 2;
* ``ref.logits`` (B, Np), ``ref.bce`` (), ``ref.kl.<i>`` () (unweighted), ``ref.loss`` ();
* ``ref.grad.features``, ``ref.grad.discriminator.<name>``, ``ref.grad.attn.<i>``.

Usage:  python Tools/make_patchguard_fixture.py [--out DIR]   (needs torch and safetensors only)
"""

import argparse
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import warnings

warnings.filterwarnings("ignore", message="reduction: 'mean' divides")  # the official code uses 'mean'

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "Tests", "PatchGuardNNTests", "Fixtures")
NAME = "patchguard_official_discriminator.safetensors"
FIXTURE_VERSION = 1

# Tiny irregular config: no squares, no powers of two where avoidable.
B, NP, C, HEADS, HIDDEN, LAYERS = 2, 5, 12, 3, 20, 2
VIT_HEADS, PREFIX = 2, 1          # the attention maps come from a ViT with 2 heads and a class token
N = NP + PREFIX
REG_COEFS = [0.005, 0.01, 0.05]   # the official Loss.reg coefficients
SEED = 2025

# The deterministic writer of make_vit_fixtures.py (copied: importing that tool would need timm).
import json  # noqa: E402

_ST_DTYPES = {torch.float64: "F64", torch.float32: "F32"}


def save_safetensors_deterministic(tensors, path, metadata):
    """Write a safetensors file whose bytes depend only on the tensors and metadata.

    ``safetensors.torch.save_file`` serialises ``__metadata__`` from a hash map, so its header key
    order (and therefore the file bytes) changes from run to run. Here the header JSON has sorted
    keys, tensors are laid out F64 first then F32, each group by name (no gaps: every size is a
    multiple of 8 bytes in the F64 group), and the header is space-padded to a multiple of 8 bytes,
    as the format requires. Little-endian, as the format requires.
    """
    assert sys.byteorder == "little"
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header, blobs, offset = {}, [], 0
    for k in order:
        t = tensors[k].contiguous()
        raw = t.numpy().tobytes()
        header[k] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = dict(sorted(metadata.items()))
    hbytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)
    with open(path, "wb") as f:
        f.write(len(hbytes).to_bytes(8, "little"))
        f.write(hbytes)
        for raw in blobs:
            f.write(raw)



class AttentionBlock(nn.Module):
    """Official ``AttentionBlock`` (rohban-lab/PatchGuard, patchguard.py), re-stated."""

    def __init__(self, embed_dim, hidden_dim, num_heads, dropout=0.0):
        super().__init__()
        self.layer_norm_1 = nn.LayerNorm(embed_dim)
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, batch_first=True)
        self.linear = nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                    nn.Linear(hidden_dim, embed_dim))
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x):
        a, _ = self.attn(x, x, x)
        x = self.layer_norm_1(x + self.dropout1(a))
        return x + self.dropout2(self.linear(x))


class Discriminator(nn.Module):
    """Official ``Discriminator`` (rohban-lab/PatchGuard, patchguard.py), re-stated."""

    def __init__(self, embed_dim, hidden_dim, num_patches, num_layers=1, num_heads=12, dropout_rate=0.0):
        super().__init__()
        self.transformer_encoder = nn.Sequential(
            *[AttentionBlock(embed_dim, hidden_dim, num_heads, dropout=dropout_rate) for _ in range(num_layers)])
        self.output_layer = nn.Sequential(nn.Linear(embed_dim, 1))
        self.positional_encodings = nn.Parameter(torch.randn(num_patches, embed_dim))

    def forward(self, x):
        x = x + self.positional_encodings.unsqueeze(0)
        return self.output_layer(self.transformer_encoder(x)).squeeze(-1)


def official_loss(scores, masks, attn_weights, num_patches):
    """Official ``Loss(reg_type='KL_divergence')``: returns (total, bce, [kl_i unweighted])."""
    bce = F.binary_cross_entropy_with_logits(scores, masks, reduction="none").sum(dim=1).mean()
    kls = [F.kl_div(torch.log(a + 1e-8), torch.full_like(a, 1 / num_patches), reduction="mean")
           for a in attn_weights]
    reg = sum(REG_COEFS[i] * kl for i, kl in enumerate(kls))
    return bce + 1 * reg, bce, kls


def build():
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = Discriminator(C, HIDDEN, NP, LAYERS, HEADS, 0.2).double()
    model.eval()
    assert model.transformer_encoder[0].layer_norm_1.eps == 1e-5
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if "layer_norm" in name and name.endswith("weight"):
                v = 1 + 0.3 * r
            elif "layer_norm" in name or name.endswith("bias"):
                v = 0.2 * r
            elif name == "positional_encodings":
                v = 0.5 * r
            else:
                v = r / math.sqrt(p.shape[-1])
            p.copy_(v)
    features = torch.randn(B, NP, C, generator=gen, dtype=torch.float64)
    labels = torch.zeros(B, NP, dtype=torch.float64)
    labels[1, 1] = labels[1, 3] = labels[1, 4] = 1
    attn = []
    for i in range(len(REG_COEFS)):
        scores = (1 + i) * 1.5 * torch.randn(B, VIT_HEADS, N, N, generator=gen, dtype=torch.float64)
        attn.append(scores.softmax(dim=-1).requires_grad_(True))   # softmax over all tokens, as the ViT's
    features.requires_grad_(True)

    logits = model(features)
    total, bce, kls = official_loss(logits, labels, [a[:, :, PREFIX:, PREFIX:] for a in attn], NP)
    total.backward()

    t = {f"discriminator.{n}": p.detach().clone() for n, p in model.named_parameters()}
    t["ref.features"] = features.detach().clone()
    t["ref.labels"] = labels
    t["ref.logits"] = logits.detach().clone()
    t["ref.bce"] = bce.detach().reshape(())
    t["ref.loss"] = total.detach().reshape(())
    t["ref.grad.features"] = features.grad.clone()
    for n, p in model.named_parameters():
        t[f"ref.grad.discriminator.{n}"] = p.grad.clone()
    for i, a in enumerate(attn):
        t[f"ref.attn.{i}"] = a.detach().clone()
        t[f"ref.grad.attn.{i}"] = a.grad.clone()
        t[f"ref.kl.{i}"] = kls[i].detach().reshape(())
    meta = dict(fixture_version=str(FIXTURE_VERSION), torch_version=torch.__version__,
                official_commit="110d129e31686bd27605ffbe844bf9d5d152aa0e",
                config=f"B={B} Np={NP} C={C} heads={HEADS} hidden={HIDDEN} layers={LAYERS} "
                       f"vit_heads={VIT_HEADS} prefix={PREFIX} reg_coefs={REG_COEFS} kl_log_eps=1e-8 ln_eps=1e-5")
    return t, meta, (model, features, labels, attn)


def verify(t, state):
    """Central differences of the official loss along random directions vs the autograd gradients."""
    model, features, labels, attn = state
    gen = torch.Generator().manual_seed(7)

    def loss_at(f, a_list):
        with torch.no_grad():
            return official_loss(model(f), labels, [a[:, :, PREFIX:, PREFIX:] for a in a_list], NP)[0].item()

    h = 1e-6
    d = torch.randn(features.shape, generator=gen, dtype=torch.float64)
    f0 = features.detach()
    fd = (loss_at(f0 + h * d, attn) - loss_at(f0 - h * d, attn)) / (2 * h)
    an = (t["ref.grad.features"] * d).sum().item()
    assert abs(fd - an) <= 1e-6 * max(1, abs(an)), (fd, an)
    a0 = [a.detach() for a in attn]
    da = a0[2] * torch.randn(a0[2].shape, generator=gen, dtype=torch.float64)  # relative: stays > 0
    plus = a0[:2] + [a0[2] + h * da]
    minus = a0[:2] + [a0[2] - h * da]
    fd = (loss_at(f0, plus) - loss_at(f0, minus)) / (2 * h)
    an = (t["ref.grad.attn.2"] * da).sum().item()
    assert abs(fd - an) <= 1e-6 * max(1, abs(an)), (fd, an)
    print(f"finite differences ok (features, attn.2)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    t, meta, state = build()
    verify(t, state)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, NAME)
    save_safetensors_deterministic(t, path, meta)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.1f} KiB, {len(t)} tensors); "
          f"loss {t['ref.loss'].item():.12g}, bce {t['ref.bce'].item():.12g}, "
          f"kl {[round(t[f'ref.kl.{i}'].item(), 9) for i in range(3)]}")


if __name__ == "__main__":
    main()

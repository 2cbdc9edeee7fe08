#!/usr/bin/env python3
"""Regenerate the timm ViT reference fixtures used by PatchGuardNNTests.

Builds tiny ``timm.models.vision_transformer.VisionTransformer`` models, fills EVERY parameter with
seeded, non-trivial random values, runs them in float64 on a fixed [0, 1] input batch (with the
ImageNet normalisation our Swift ViT applies as its first op) and writes one safetensors file per
configuration to ``Tests/PatchGuardNNTests/Fixtures/``:

* ``vit_tiny_plain.safetensors``  - 28x28 image, patch 7 (16 patches), dim 24, depth 2, 3 heads,
  MLP hidden 48, qkv bias, class token, no layer scale, no registers, head with 5 classes.
* ``vit_tiny_dinov2.safetensors`` - same trunk plus LayerScale (random gammas) and 2 register
  tokens, ``no_embed_class=True`` (timm's DINOv2-with-registers layout: ``pos_embed`` covers the
  16 patch tokens only), no head.

Tensor layout inside a fixture (see Tools/README.md for the full table):

* every timm parameter under its exact timm name, F32 (the float64 reference model uses exactly
  these values, upcast);
* ``ref.input`` F32 (B=2, 3, 28, 28) in [0, 1];
* ``ref.features.<i>`` F64 (default; see --ref-dtype) (B, 16, D): final-normed (``model.norm``) patch tokens of block i
  (1-based), prefix (cls/register) tokens dropped;
* ``ref.attn.<i>`` F64 (B, heads, N, N): attention probabilities of block i, token order
  [cls, reg..., patches];
* ``ref.logits`` F64 (B, classes): plain fixture only (token pool -> ``norm`` -> ``head``);
* ``ref.r.*`` F32: fixed random weights of the scalar test loss
  ``ref.loss`` (F64, shape ()) = sum(r.features * features.<depth>) + sum(r.attn.1 * attn.1)
  + sum(r.features.1 * features.1) [+ sum(r.logits * logits), plain fixture];
* ``ref.grad.input`` F64: d loss / d ref.input (through the normalisation);
* ``ref.grad.<param>`` F64: d loss / d param for every parameter.

``--verify`` reloads the files, checks them against timm again AND against an independent
functional re-implementation of the ViT written here with plain torch ops (the same maths the
Swift code must implement), plus a finite-difference check of the input gradient.

Usage:  python Tools/make_vit_fixtures.py [--out DIR] [--verify-only]
"""

import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timm_env  # noqa: E402

timm = timm_env.import_timm()
import safetensors  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

FIXTURE_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH = 2
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "Tests", "PatchGuardNNTests", "Fixtures")

COMMON = dict(
    img_size=28,
    patch_size=7,
    in_chans=3,
    embed_dim=24,
    depth=2,
    num_heads=3,
    mlp_ratio=2.0,
    qkv_bias=True,
    class_token=True,
    global_pool="token",
    drop_rate=0.0,
    pos_drop_rate=0.0,
    proj_drop_rate=0.0,
    attn_drop_rate=0.0,
    drop_path_rate=0.0,
)

CONFIGS = {
    "vit_tiny_plain": dict(
        seed=1234,
        timm_kwargs=dict(COMMON, num_classes=5, init_values=None, reg_tokens=0, no_embed_class=False),
    ),
    "vit_tiny_dinov2": dict(
        seed=5678,
        timm_kwargs=dict(COMMON, num_classes=0, init_values=1e-5, reg_tokens=2, no_embed_class=True),
    ),
}


# --------------------------------------------------------------------------------------------
# Deterministic safetensors writer
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Model construction with fixed random weights
# --------------------------------------------------------------------------------------------

def build_model(timm_kwargs):
    model = VisionTransformer(**timm_kwargs)
    model.eval()
    for blk in model.blocks:
        blk.attn.fused_attn = False  # explicit softmax path, so attn_drop sees the probabilities
    # Sanity checks on the timm defaults we rely on.
    assert isinstance(model.norm, torch.nn.LayerNorm) and model.norm.eps == 1e-6, model.norm
    assert isinstance(model.blocks[0].mlp.act, torch.nn.GELU) and model.blocks[0].mlp.act.approximate == "none"
    assert isinstance(model.fc_norm, torch.nn.Identity)
    return model


def randomize_(model, seed):
    """Overwrite every parameter with seeded random values that are exactly representable in F32."""
    gen = torch.Generator().manual_seed(seed)
    layer_norm_params = set()
    for mname, mod in model.named_modules():
        if isinstance(mod, torch.nn.LayerNorm):
            layer_norm_params.add(f"{mname}.weight")
            layer_norm_params.add(f"{mname}.bias")

    def randn(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            shape = p.shape
            if name in layer_norm_params and name.endswith(".weight"):
                v = 1.0 + 0.3 * randn(shape)
            elif name in layer_norm_params and name.endswith(".bias"):
                v = 0.2 * randn(shape)
            elif name.endswith(".gamma"):  # LayerScale
                v = 0.25 + 0.75 * torch.rand(shape, generator=gen, dtype=torch.float64)
            elif name in ("cls_token", "reg_token"):
                v = randn(shape)
            elif name == "pos_embed":
                v = 0.5 * randn(shape)
            elif name.endswith(".weight"):  # Linear / Conv2d
                fan_in = math.prod(shape[1:])
                gain = 1.5 if name.endswith("attn.qkv.weight") else 1.0
                v = gain * randn(shape) / math.sqrt(fan_in)
            elif name.endswith(".bias"):
                v = 0.1 * randn(shape)
            else:
                raise ValueError(f"no init rule for parameter {name}")
            p.copy_(v.to(torch.float32).to(p.dtype))


# --------------------------------------------------------------------------------------------
# Forward with captured intermediates
# --------------------------------------------------------------------------------------------

def normalize(x):
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def timm_forward(model, x):
    """Run the timm model on an image batch in [0, 1]; return dict of outputs (graph kept)."""
    block_out, attn = {}, {}
    handles = []
    for i, blk in enumerate(model.blocks, start=1):
        handles.append(blk.register_forward_hook(lambda m, a, o, i=i: block_out.__setitem__(i, o)))
        handles.append(blk.attn.attn_drop.register_forward_hook(lambda m, a, o, i=i: attn.__setitem__(i, o)))
    try:
        final = model.forward_features(normalize(x))
        out = {}
        if model.num_classes > 0:
            out["logits"] = model.forward_head(final)
    finally:
        for h in handles:
            h.remove()
    npt = model.num_prefix_tokens
    for i in block_out:
        out[f"features.{i}"] = model.norm(block_out[i])[:, npt:, :]
        out[f"attn.{i}"] = attn[i]
    depth = len(model.blocks)
    assert torch.equal(out[f"features.{depth}"], final[:, npt:, :])
    return out


def functional_forward(t, cfg, x):
    """Independent ViT forward from a name->tensor dict with plain torch ops (what Swift implements).

    x: (B, 3, H, W) in [0, 1].  Returns the same dict as ``timm_forward``.
    """
    kw = cfg["timm_kwargs"]
    D, P, H = kw["embed_dim"], kw["patch_size"], kw["num_heads"]
    hd = D // H
    eps = 1e-6
    B = x.shape[0]
    xn = normalize(x)
    # Patch embedding: conv with stride P == per-patch linear map, patches in row-major order.
    tok = F.conv2d(xn, t["patch_embed.proj.weight"], t["patch_embed.proj.bias"], stride=P)  # (B, D, gh, gw)
    tok = tok.flatten(2).transpose(1, 2)  # (B, L, D)
    prefix = [t["cls_token"].expand(B, -1, -1)]
    if "reg_token" in t:
        prefix.append(t["reg_token"].expand(B, -1, -1))
    if kw["no_embed_class"]:
        z = torch.cat(prefix + [tok + t["pos_embed"]], dim=1)
    else:
        z = torch.cat(prefix + [tok], dim=1) + t["pos_embed"]
    npt = sum(p.shape[1] for p in prefix)
    N = z.shape[1]

    def ln(v, name):
        mu = v.mean(-1, keepdim=True)
        var = ((v - mu) ** 2).mean(-1, keepdim=True)  # biased variance
        return (v - mu) / torch.sqrt(var + eps) * t[f"{name}.weight"] + t[f"{name}.bias"]

    def lin(v, name):
        return v @ t[f"{name}.weight"].T + t[f"{name}.bias"]

    out = {}
    for i in range(kw["depth"]):
        pre = f"blocks.{i}"
        h = ln(z, f"{pre}.norm1")
        qkv = lin(h, f"{pre}.attn.qkv")  # (B, N, 3D): [q | k | v], each head-major (H, hd)
        q, k, v = qkv.view(B, N, 3, H, hd).permute(2, 0, 3, 1, 4)  # (B, H, N, hd)
        a = torch.softmax((q * hd ** -0.5) @ k.transpose(-2, -1), dim=-1)
        o = (a @ v).transpose(1, 2).reshape(B, N, D)
        o = lin(o, f"{pre}.attn.proj")
        if f"{pre}.ls1.gamma" in t:
            o = o * t[f"{pre}.ls1.gamma"]
        z = z + o
        h = ln(z, f"{pre}.norm2")
        h = lin(h, f"{pre}.mlp.fc1")
        h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))  # exact GELU
        h = lin(h, f"{pre}.mlp.fc2")
        if f"{pre}.ls2.gamma" in t:
            h = h * t[f"{pre}.ls2.gamma"]
        z = z + h
        out[f"features.{i + 1}"] = ln(z, "norm")[:, npt:, :]
        out[f"attn.{i + 1}"] = a
    if "head.weight" in t:
        out["logits"] = lin(ln(z, "norm")[:, 0, :], "head")
    return out


def loss_terms(depth, has_logits):
    """(r-tensor name, output name) pairs of the scalar test loss."""
    terms = [("ref.r.features", f"features.{depth}"), ("ref.r.attn.1", "attn.1"), ("ref.r.features.1", "features.1")]
    if has_logits:
        terms.append(("ref.r.logits", "logits"))
    return terms


def compute_loss(out, r, terms):
    return sum((r[rn] * out[on]).sum() for rn, on in terms)


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------

def make_fixture(name, cfg, out_dir, ref_dtype=torch.float64):
    torch.manual_seed(0)  # nothing below should depend on it; belt and braces
    kw = cfg["timm_kwargs"]
    model = build_model(kw)
    randomize_(model, cfg["seed"])
    model = model.double()
    params = dict(model.named_parameters())

    gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    img = kw["img_size"]
    x32 = torch.rand((BATCH, 3, img, img), generator=gen, dtype=torch.float32)
    x = x32.double().requires_grad_(True)

    out = timm_forward(model, x)
    depth = kw["depth"]
    has_logits = "logits" in out
    terms = loss_terms(depth, has_logits)
    r32 = {rn: torch.randn(out[on].shape, generator=gen, dtype=torch.float32) for rn, on in terms}
    r = {k: v.double() for k, v in r32.items()}
    loss = compute_loss(out, r, terms)
    model.zero_grad(set_to_none=True)
    loss.backward()

    tensors = {}
    for pname, p in params.items():
        tensors[pname] = p.detach().to(torch.float32).contiguous()
        assert torch.equal(tensors[pname].double(), p.detach()), pname
    tensors["ref.input"] = x32.contiguous()
    for k, v in out.items():
        tensors[f"ref.{k}"] = v.detach().to(ref_dtype).contiguous()
    for k, v in r32.items():
        tensors[k] = v.contiguous()
    tensors["ref.loss"] = loss.detach().double().reshape(())
    tensors["ref.grad.input"] = x.grad.detach().to(ref_dtype).contiguous()
    for pname, p in params.items():
        if p.grad is None:
            raise RuntimeError(f"parameter {pname} got no gradient; the test loss must reach every parameter")
        tensors[f"ref.grad.{pname}"] = p.grad.detach().to(ref_dtype).contiguous()

    npt = model.num_prefix_tokens
    n_tokens = npt + model.patch_embed.num_patches
    config = dict(
        kw,
        name=name,
        fixture_version=FIXTURE_VERSION,
        model_class="timm.models.vision_transformer.VisionTransformer",
        mlp_hidden=int(kw["embed_dim"] * kw["mlp_ratio"]),
        head_dim=kw["embed_dim"] // kw["num_heads"],
        num_patches=model.patch_embed.num_patches,
        grid=list(model.patch_embed.grid_size),
        num_prefix_tokens=npt,
        num_tokens=n_tokens,
        token_order="[cls, reg_0..reg_{R-1}, patches row-major]",
        pos_embed_covers="patch tokens only (added before cls/reg are prepended)" if kw["no_embed_class"]
        else "all tokens [cls, (reg), patches] (added after concatenation)",
        layer_scale=kw["init_values"] is not None,
        norm="LayerNorm, eps=1e-6, biased variance",
        act="GELU exact (erf)",
        attention="softmax((q * head_dim**-0.5) @ k^T); qkv weight rows = [q | k | v], each head-major",
        input_normalisation=dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, formula="(x - mean) / std, x in [0,1]"),
        batch=BATCH,
        seed=cfg["seed"],
        compute_dtype="float64",
        dtypes="parameters, ref.input and ref.r.* are F32 (exact inputs of the float64 computation); "
               f"ref.loss is F64; all other ref.* (outputs, gradients) are {'F64' if ref_dtype == torch.float64 else 'F32'}",
        features="ref.features.<i> (1-based) = model.norm(block i output)[:, num_prefix_tokens:, :]",
        loss=" + ".join(f"sum({rn} * ref.{on})" for rn, on in terms),
    )
    metadata = {
        "format": "pt",
        "fixture_version": str(FIXTURE_VERSION),
        "config": json.dumps(config, sort_keys=True),
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "safetensors_version": safetensors.__version__,
        "torchvision_shim": str(timm_env.torchvision_shimmed()),
        "generator": "Tools/make_vit_fixtures.py",
    }
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.safetensors")
    save_safetensors_deterministic(tensors, path, metadata)
    print(f"wrote {path}: {os.path.getsize(path) / 1024:.1f} KiB, {len(tensors)} tensors, loss={loss.item():.17g}")
    return path


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------

def _maxdiff(a, b):
    return (a.double() - b.double()).abs().max().item()


def verify(path):
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        meta = f.metadata()
    cfg_json = json.loads(meta["config"])
    name = cfg_json["name"]
    cfg = CONFIGS[name]
    kw = cfg["timm_kwargs"]
    t = load_file(path)
    params = {k: v for k, v in t.items() if not k.startswith("ref.")}
    problems = []

    def check(label, got, want, tol):
        if want.dtype == torch.float32:
            tol = max(tol, 2e-7)  # stored rounded to F32
        d = _maxdiff(got, want)
        scale = max(1.0, want.double().abs().max().item())
        ok = d <= tol * scale
        print(f"  {'ok ' if ok else 'BAD'} {label:38s} max|diff|={d:.3e} (tol {tol:.0e} x {scale:.3g})")
        if not ok:
            problems.append(label)

    # 1) Fresh timm model, weights loaded by name (strict: names must match timm's exactly).
    model = build_model(kw).double()
    model.load_state_dict({k: v.double() for k, v in params.items()}, strict=True)
    x = t["ref.input"].double().requires_grad_(True)
    out = timm_forward(model, x)
    terms = loss_terms(kw["depth"], "logits" in out)
    r = {rn: t[rn].double() for rn, _ in terms}
    loss = compute_loss(out, r, terms)
    loss.backward()
    print(f"{name}: timm reload")
    check("loss", loss.detach(), t["ref.loss"], 1e-13)
    for k in out:
        check(f"ref.{k}", out[k].detach(), t[f"ref.{k}"], 1e-13)
    check("ref.grad.input", x.grad, t["ref.grad.input"], 1e-13)
    for pname, p in model.named_parameters():
        check(f"ref.grad.{pname}", p.grad, t[f"ref.grad.{pname}"], 1e-13)

    # 2) Independent functional implementation (the maths the Swift ViT implements).
    tp = {k: v.double().requires_grad_(True) for k, v in params.items()}
    x2 = t["ref.input"].double().requires_grad_(True)
    out2 = functional_forward(tp, cfg, x2)
    loss2 = compute_loss(out2, r, terms)
    grads = torch.autograd.grad(loss2, [x2] + list(tp.values()))
    print(f"{name}: functional re-implementation")
    check("loss", loss2.detach(), t["ref.loss"], 1e-11)
    for k in out2:
        check(f"ref.{k}", out2[k].detach(), t[f"ref.{k}"], 1e-11)
    check("ref.grad.input", grads[0], t["ref.grad.input"], 1e-11)
    for (pname, _), g in zip(tp.items(), grads[1:]):
        check(f"ref.grad.{pname}", g, t[f"ref.grad.{pname}"], 1e-11)

    # 3) Finite differences of the loss along random directions in input space (float64).
    gen = torch.Generator().manual_seed(99)
    for j in range(3):
        v = torch.randn(x2.shape, generator=gen, dtype=torch.float64)
        h = 1e-5
        with torch.no_grad():
            lp = compute_loss(functional_forward(tp, cfg, x2 + h * v), r, terms)
            lm = compute_loss(functional_forward(tp, cfg, x2 - h * v), r, terms)
        fd = ((lp - lm) / (2 * h)).item()
        an = (t["ref.grad.input"] * v).sum().item()
        rel = abs(fd - an) / max(1e-12, abs(an))
        ok = rel < (1e-6 if t["ref.grad.input"].dtype == torch.float64 else 1e-5)
        print(f"  {'ok ' if ok else 'BAD'} finite-difference dir {j}: fd={fd:.10g} analytic={an:.10g} rel={rel:.2e}")
        if not ok:
            problems.append(f"fd{j}")

    size_kib = os.path.getsize(path) / 1024
    print(f"  size {size_kib:.1f} KiB; metadata torch={meta['torch_version']} timm={meta['timm_version']}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--verify-only", action="store_true", help="only verify existing fixtures")
    ap.add_argument("--ref-dtype", choices=["f64", "f32"], default="f64",
                    help="dtype of reference outputs/gradients (ref.loss is always F64). f64 (default, ~280 KiB per "
                         "file) lets a Double implementation be checked at ~1e-9; f32 shrinks files to ~180 KiB")
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths = []
    for name, cfg in CONFIGS.items():
        path = os.path.join(args.out, f"{name}.safetensors")
        if not args.verify_only:
            path = make_fixture(name, cfg, args.out,
                                torch.float64 if args.ref_dtype == "f64" else torch.float32)
        paths.append(path)
    problems = []
    for path in paths:
        problems += verify(path)
    if problems:
        print(f"VERIFICATION FAILED: {problems}")
        sys.exit(1)
    print("all fixtures verified")


if __name__ == "__main__":
    main()

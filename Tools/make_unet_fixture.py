"""Build the diffusers U-Net parity fixture for Tests/PatchGuardNNTests/UNet2DParityTests.swift.

A tiny ``diffusers.UNet2DModel`` (both block kinds, attention in a down block, the mid block and an up block,
1x1 shortcuts, two levels) with seeded weights (PyTorch's default init; GroupNorm affine parameters randomised so
that weight and bias are distinguishable) is run in float64 on a fixed input and two timesteps; the fixture holds
the parameters under diffusers' own names, the input, the timesteps, the output, the loss L = sum(r * output) and
the gradients of L w.r.t. the input and every parameter.

diffusers computes the sinusoidal timestep embedding in float32 whatever the model's dtype
(``get_timestep_embedding`` casts to ``.float()``); the fixture replaces ``time_proj`` by the same formula in
float64 so that a float64 reference is float64 throughout. The script checks that this changes the output only at
float32 rounding level (``max_time_proj_effect`` in the metadata), and that central finite differences of the loss
along random input directions match the input gradient.

    python Tools/make_unet_fixture.py            # writes Tests/PatchGuardNNTests/Fixtures/unet_tiny.safetensors
    python Tools/make_unet_fixture.py --out /tmp/unet.safetensors

Needs torch (CPU) and diffusers (see Tools/README.md).
"""

import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timm_env  # noqa: E402  (diffusers' U-Net imports torchvision: the same shim as timm)

diffusers = timm_env.import_diffusers()
UNet2DModel = diffusers.UNet2DModel

_ST_DTYPES = {torch.float64: "F64", torch.float32: "F32"}


def save_safetensors_deterministic(tensors, path, metadata):
    """The byte-deterministic writer of make_vit_fixtures.py (sorted header, F64 first, padded to 8 bytes); copied
    rather than imported because that script imports timm at module level."""
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

CONFIG = dict(
    sample_size=8,
    in_channels=3,
    out_channels=3,
    block_out_channels=(8, 12),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=4,
    norm_num_groups=4,
)
SEED = 2024
TIMESTEPS = [17.0, 503.0]
BATCH = 2


def timestep_embedding_f64(timesteps, dim, flip_sin_to_cos, shift, max_period=10000):
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float64) / (half - shift)
    emb = timesteps.to(torch.float64)[:, None] * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


def build():
    torch.manual_seed(SEED)
    model = UNet2DModel(**CONFIG).to(torch.float64).eval()
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                base = 1.0 if name.endswith(".weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return model, g


class TimestepsF64(torch.nn.Module):
    """diffusers ``Timesteps`` with the embedding computed in float64."""

    def __init__(self, tp):
        super().__init__()
        self.num_channels, self.flip, self.shift = tp.num_channels, tp.flip_sin_to_cos, tp.downscale_freq_shift

    def forward(self, ts):
        return timestep_embedding_f64(ts, self.num_channels, self.flip, self.shift)


def run(model, x, t, f64_time=True):
    tp = model.time_proj
    if f64_time:
        model.time_proj = TimestepsF64(tp)
    try:
        return model(x, t).sample
    finally:
        model.time_proj = tp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests", "PatchGuardNNTests",
                                                  "Fixtures", "unet_tiny.safetensors"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, g = build()
    s = CONFIG["sample_size"]
    x = torch.randn((BATCH, CONFIG["in_channels"], s, s), generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(TIMESTEPS, dtype=torch.float64)
    r = torch.randn((BATCH, CONFIG["out_channels"], s, s), generator=g, dtype=torch.float64)

    y = run(model, x, t)
    loss = (r * y).sum()
    model.zero_grad()
    loss.backward()

    with torch.no_grad():
        y32time = run(model, x, t, f64_time=False)
        time_effect = ((y32time - y).abs().max() / y.abs().max()).item()
        assert time_effect < 1e-5, time_effect
        # Central differences along random input directions.
        worst = 0.0
        for k in range(3):
            d = torch.randn(x.shape, generator=g, dtype=torch.float64)
            h = 1e-6
            lp = (r * run(model, x + h * d, t)).sum()
            lm = (r * run(model, x - h * d, t)).sum()
            num = ((lp - lm) / (2 * h)).item()
            ana = (x.grad * d).sum().item()
            worst = max(worst, abs(num - ana) / max(abs(ana), 1e-12))
        assert worst < 1e-6, worst

    tensors = {}
    for name, p in model.named_parameters():
        tensors[name] = p.detach().clone()
        tensors["ref.grad." + name] = p.grad.detach().clone()
    tensors["ref.input"] = x.detach().clone()
    tensors["ref.timesteps"] = t.clone()
    tensors["ref.r"] = r
    tensors["ref.output"] = y.detach().clone()
    tensors["ref.loss"] = loss.detach().reshape(1).clone()
    tensors["ref.grad.input"] = x.grad.detach().clone()
    meta = {
        "format": "patchguard-unet-fixture-v1",
        "unet_config": json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in CONFIG.items()}, sort_keys=True),
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "seed": str(SEED),
        "dtype": "float64",
        "time_proj": "float64 get_timestep_embedding (diffusers computes it in float32)",
        "max_time_proj_effect": f"{time_effect:.3e}",
        "input_grad_fd_rel_error": f"{worst:.3e}",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_safetensors_deterministic(tensors, args.out, meta)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {n} parameters, {os.path.getsize(args.out)} bytes; "
          f"time_proj f32 effect {time_effect:.2e}, input-gradient FD rel error {worst:.2e}")


if __name__ == "__main__":
    main()

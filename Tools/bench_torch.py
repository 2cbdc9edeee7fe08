#!/usr/bin/env python3
"""PyTorch side of the PatchGuard-Swift ViT benchmark (CPU, 2 threads by default).

For each architecture (timm, random weights, ``pretrained=False``) at 224x224, batch 8, measures

* ``forward``    - ``forward_features`` under ``torch.no_grad()`` (eval mode);
* ``train``      - forward + backward to every parameter of ``loss = sum(r * patch_features)``
                   (final-normed patch tokens, fixed random ``r``), gradients reset each step, no
                   optimiser update;
* ``input_grad`` - same loss, parameters frozen (``requires_grad=False``), gradient w.r.t. the
                   [0, 1] input image only (what PGD attacks / Grad-CAM need).

The input is an image batch in [0, 1]; the ImageNet normalisation is part of the timed step, as in
our Swift model. Attention uses timm's default path (``F.scaled_dot_product_attention`` when
available), i.e. PyTorch as a user would run it.

Each (arch, step) runs in its own subprocess, so ``peak_rss_mb`` (``ru_maxrss`` of that process:
interpreter + torch + model + activations) is per measurement. One warm-up iteration, then timed
iterations until at least ``--min-seconds`` have elapsed (at least ``--min-iters``, at most
``--max-iters``). Prints one JSON object per line:

    {"impl":"pytorch","arch":...,"image_size":224,"batch":8,"step":"forward"|"train"|"input_grad",
     "img_per_s":...,"peak_rss_mb":..., ...extra context fields}

``--precision bf16`` runs every forward under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (PyTorch's CPU
mixed precision: linear / matmul / conv in bf16 with fp32 accumulation, fp32 master weights; the backward runs
outside the context, as the PyTorch docs recommend), for comparison with ``patchguard bench --precision bf16``.

Usage:  python Tools/bench_torch.py [--threads 2] [--batch 8] [--archs a,b] [--steps s,t] [--precision fp32|bf16]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ARCHS = ["vit_small_patch14_dinov2", "vit_tiny_patch16_224"]
STEPS = ["forward", "train", "input_grad"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# The diffusion detector's U-Net (Configs/diffusion-default.json's `diffusion` section; diffusers names). Benchmarked
# as arch "unet_ddpm" at --image-size (use 64 for the default config): forward = eps_theta(x_t, t); train = forward +
# backward of sum(r * eps) to every parameter; input_grad = the same loss w.r.t. x_t only.
UNET_CONFIG = dict(in_channels=3, out_channels=3, block_out_channels=(32, 64, 64), layers_per_block=1,
                   down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                   up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), attention_head_dim=8, norm_num_groups=8)


def run_unet(step, args):
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import timm_env

    diffusers = timm_env.import_diffusers()

    torch.manual_seed(0)
    config = dict(UNET_CONFIG)
    if args.unet_channels:
        config["block_out_channels"] = tuple(int(c) for c in args.unet_channels.split(","))
    model = diffusers.UNet2DModel(sample_size=args.image_size, **config)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn((args.batch, 3, args.image_size, args.image_size), generator=gen)
    t = torch.randint(0, 1000, (args.batch,), generator=gen)
    r = torch.randn(x0.shape, generator=gen)
    if step == "forward":
        model.eval()

        def iteration():
            with torch.no_grad(), autocast(args):
                model(x0, t).sample
    elif step == "train":
        model.train()

        def iteration():
            model.zero_grad(set_to_none=True)
            with autocast(args):
                out = model(x0, t).sample
            (out.float() * r).sum().backward()
    elif step == "input_grad":
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)

        def iteration():
            x = x0.clone().requires_grad_(True)
            with autocast(args):
                out = model(x, t).sample
            (out.float() * r).sum().backward()
    else:
        raise ValueError(step)
    return model, iteration, {"diffusers": diffusers.__version__, "block_out_channels": list(config["block_out_channels"])}


def autocast(args):
    """The forward's context: bf16 autocast on the CPU for --precision bf16, else nothing."""
    import contextlib

    import torch

    if args.precision == "bf16":
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_one(arch, step, args):
    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if arch == "unet_ddpm":
        model, iteration, extra = run_unet(step, args)
        return timed(arch, step, args, model, iteration, extra)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import timm_env

    timm = timm_env.import_timm()

    torch.manual_seed(0)
    if arch == "vit_cpu_tiny":
        # Our CPU preset (ViTConfig.preset "vit_cpu_tiny"): 8×8 patches, width 128, 4 blocks, 4 heads, a class token.
        from timm.models.vision_transformer import VisionTransformer

        model = VisionTransformer(img_size=args.image_size, patch_size=8, embed_dim=128, depth=4, num_heads=4,
                                  num_classes=0)
    else:
        model = timm.create_model(arch, img_size=args.image_size, pretrained=False, num_classes=0)
    npt = model.num_prefix_tokens
    n_patches = model.patch_embed.num_patches
    dim = model.embed_dim
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand((args.batch, 3, args.image_size, args.image_size), generator=gen)
    r = torch.randn((args.batch, n_patches, dim), generator=gen)

    def features(x):
        with autocast(args):
            out = model.forward_features((x - mean) / std)[:, npt:, :]
        return out.float()

    if step == "forward":
        model.eval()

        def iteration():
            with torch.no_grad():
                features(x0)
    elif step == "train":
        model.train()  # all dropout / drop-path rates are 0 for these models

        def iteration():
            model.zero_grad(set_to_none=True)
            (features(x0) * r).sum().backward()
    elif step == "input_grad":
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)

        def iteration():
            x = x0.clone().requires_grad_(True)
            (features(x) * r).sum().backward()
            assert x.grad is not None
    else:
        raise ValueError(step)

    extra = {"attention": "fused_sdpa" if getattr(model.blocks[0].attn, "fused_attn", False) else "explicit",
             "timm": timm.__version__}
    return timed(arch, step, args, model, iteration, extra)


def timed(arch, step, args, model, iteration, extra):
    import torch

    iteration()  # warm-up
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        iteration()
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if len(times) >= args.max_iters or (len(times) >= args.min_iters and elapsed >= args.min_seconds):
            break
    mean_t = sum(times) / len(times)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    return {
        "impl": "pytorch",
        "arch": arch,
        "image_size": args.image_size,
        "batch": args.batch,
        "step": step,
        "img_per_s": round(args.batch / mean_t, 3),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "sec_per_iter": round(mean_t, 4),
        "best_sec_per_iter": round(min(times), 4),
        "iters": len(times),
        "threads": args.threads,
        "precision": args.precision,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "torch": torch.__version__,
        **extra,
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--min-iters", type=int, default=3)
    ap.add_argument("--max-iters", type=int, default=20)
    ap.add_argument("--min-seconds", type=float, default=6.0)
    ap.add_argument("--unet-channels", default="",
                    help="block_out_channels of unet_ddpm, e.g. 32,64,128 (Configs/diffusion-mvtec-cpu.json); "
                         "default: diffusion-default.json's 32,64,64")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: forwards under torch.autocast(cpu, bfloat16)")
    ap.add_argument("--one", nargs=2, metavar=("ARCH", "STEP"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args)), flush=True)
        return

    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(args.threads)
    passthrough = ["--threads", str(args.threads), "--batch", str(args.batch), "--image-size", str(args.image_size),
                   "--min-iters", str(args.min_iters), "--max-iters", str(args.max_iters),
                   "--min-seconds", str(args.min_seconds), "--unet-channels", args.unet_channels,
                   "--precision", args.precision]
    failed = False
    for arch in args.archs.split(","):
        for step in args.steps.split(","):
            cmd = [sys.executable, os.path.abspath(__file__), "--one", arch, step] + passthrough
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
            if res.returncode != 0 or not lines:
                failed = True
                sys.stderr.write(f"bench {arch}/{step} failed (rc={res.returncode}):\n{res.stderr[-2000:]}\n")
                continue
            print(lines[-1], flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch eager baseline: one CLIP ViT (HF CLIPVisionModelWithProjection) +
linear head train or eval step, timed. Prints ONE JSON line to stdout.

  python3 scripts/bench/torch_eager_step.py --backbone b32 --mode train --batch 8 --threads 2

Dev-time only; needs torch and transformers (random init, no Hub access).
"""
import argparse
import json
import statistics
import sys
import time

BACKBONES = {
    # CLIP ViT-B/32
    "b32": dict(image_size=224, patch_size=32, hidden_size=768, intermediate_size=3072,
                num_hidden_layers=12, num_attention_heads=12, projection_dim=512),
    # matches test/fixtures/hf-clip-tiny vision tower
    "tiny": dict(image_size=64, patch_size=16, hidden_size=64, intermediate_size=256,
                 num_hidden_layers=2, num_attention_heads=4, projection_dim=64),
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch eager CLIP ViT step benchmark")
    ap.add_argument("--backbone", choices=sorted(BACKBONES), default="b32")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--mode", choices=["train", "eval"], default="train")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = torch default)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    for name in ("batch", "steps", "classes"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be >= 1")
    if a.warmup < 0 or a.threads < 0:
        ap.error("--warmup and --threads must be >= 0")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import torch
        import torch.nn.functional as F
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    except ImportError as e:
        print(f"torch_eager_step: missing dependency ({e}); "
              "pip install torch==2.13.0 transformers", file=sys.stderr)
        return 2

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    cfg = CLIPVisionConfig(num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                           attention_dropout=0.0, **BACKBONES[args.backbone])
    try:
        backbone = CLIPVisionModelWithProjection._from_config(cfg, attn_implementation="sdpa")
    except TypeError:  # older transformers
        cfg._attn_implementation = "sdpa"
        backbone = CLIPVisionModelWithProjection(cfg)
    head = torch.nn.Linear(cfg.projection_dim, args.classes)
    model = torch.nn.ModuleDict({"backbone": backbone, "head": head}).float()

    def forward(x):
        return model["head"](model["backbone"](pixel_values=x).image_embeds)

    x = torch.randn(args.batch, 3, cfg.image_size, cfg.image_size, dtype=torch.float32)
    y = torch.randint(0, args.classes, (args.batch,))

    if args.mode == "train":
        model.train()
        decay, no_decay = [], []
        for n, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if (p.ndim <= 1 or n.endswith(".bias") or "class_embedding" in n
                    or "position_embedding" in n):
                no_decay.append(p)
            else:
                decay.append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)

        def step():
            loss = F.cross_entropy(forward(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                return forward(x)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000.0)

    med = statistics.median(times)
    print(json.dumps({
        "backbone": args.backbone, "mode": args.mode, "batch": args.batch,
        "threads": torch.get_num_threads(), "steps": args.steps,
        "ms_per_step_median": round(med, 3), "ms_per_step_min": round(min(times), 3),
        "ms_per_step_max": round(max(times), 3),
        "img_per_s": round(args.batch * 1000.0 / med, 3),
        "torch_version": torch.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

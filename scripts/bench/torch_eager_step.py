#!/usr/bin/env python3
"""PyTorch eager baseline: one CLIP ViT (HF CLIPVisionModelWithProjection) +
linear head train or eval step, timed. Prints ONE JSON line to stdout.

  python3 scripts/bench/torch_eager_step.py --backbone b32 --mode train --batch 8 --threads 2
  python3 scripts/bench/torch_eager_step.py --device cuda --precision bf16 --batch 256

Dev-time only; needs torch, and transformers where installed (random init, no Hub access). Without transformers
(a GPU machine with torch alone) the same architecture written here in torch is timed instead ("impl": "torch").
--precision bf16/fp16 runs the forward under torch.autocast (fp16 with a GradScaler), as penny-train's native
backend does; on CUDA each step ends with a synchronize, so the time is the GPU's too.
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
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--impl", choices=["auto", "hf", "torch"], default="auto",
                    help="HF transformers' CLIP, or the torch-only one here (auto: HF where installed)")
    a = ap.parse_args(argv)
    for name in ("batch", "steps", "classes"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be >= 1")
    if a.warmup < 0 or a.threads < 0:
        ap.error("--warmup and --threads must be >= 0")
    return a


def torch_clip(torch, c):
    """CLIP's vision tower + projection in plain torch: HF CLIPVisionModelWithProjection's architecture (pre-LN,
    quick_gelu MLP, SDPA attention, class token, post-LN on it, projection without bias)."""
    nn, F = torch.nn, torch.nn.functional
    d, heads = c["hidden_size"], c["num_attention_heads"]

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.fc1, self.fc2 = nn.Linear(d, c["intermediate_size"]), nn.Linear(c["intermediate_size"], d)

        def forward(self, x):
            b, t, _ = x.shape
            h = self.ln1(x)
            split = lambda y: y.view(b, t, heads, d // heads).transpose(1, 2)
            a = F.scaled_dot_product_attention(split(self.q(h)), split(self.k(h)), split(self.v(h)))
            x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
            h = self.fc1(self.ln2(x))
            return x + self.fc2(h * torch.sigmoid(1.702 * h))

    class Clip(nn.Module):
        def __init__(self):
            super().__init__()
            p, n = c["patch_size"], (c["image_size"] // c["patch_size"]) ** 2
            self.patch = nn.Conv2d(3, d, p, stride=p, bias=False)
            self.class_embedding = nn.Parameter(torch.randn(d) * 0.02)
            self.position_embedding = nn.Parameter(torch.randn(n + 1, d) * 0.02)
            self.pre, self.post = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
            self.layers = nn.ModuleList(Layer() for _ in range(c["num_hidden_layers"]))
            self.proj = nn.Linear(d, c["projection_dim"], bias=False)

        def forward(self, pixel_values):
            x = self.patch(pixel_values).flatten(2).transpose(1, 2)
            x = torch.cat([self.class_embedding.expand(x.shape[0], 1, d), x], 1) + self.position_embedding
            x = self.pre(x)
            for layer in self.layers:
                x = layer(x)
            return self.proj(self.post(x[:, 0]))

    return Clip()


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"torch_eager_step: missing dependency ({e}); pip install torch==2.13.0 transformers", file=sys.stderr)
        return 2
    impl = args.impl
    if impl in ("auto", "hf"):
        try:
            from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
            impl = "hf"
        except ImportError as e:
            if impl == "hf":
                print(f"torch_eager_step: --impl hf, but transformers is missing ({e})", file=sys.stderr)
                return 2
            impl = "torch"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"torch_eager_step: --device {args.device}, but this torch ({torch.__version__}) sees no CUDA device",
              file=sys.stderr)
        return 2

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    c = BACKBONES[args.backbone]
    if impl == "hf":
        cfg = CLIPVisionConfig(num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                               attention_dropout=0.0, **c)
        try:
            backbone = CLIPVisionModelWithProjection._from_config(cfg, attn_implementation="sdpa")
        except TypeError:  # older transformers
            cfg._attn_implementation = "sdpa"
            backbone = CLIPVisionModelWithProjection(cfg)
        embed = lambda x: model["backbone"](pixel_values=x).image_embeds
    else:
        backbone = torch_clip(torch, c)
        embed = lambda x: model["backbone"](x)
    head = torch.nn.Linear(c["projection_dim"], args.classes)
    model = torch.nn.ModuleDict({"backbone": backbone, "head": head}).float().to(device)
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)

    def forward(x):
        if low is None:
            return model["head"](embed(x))
        with torch.autocast(device.type, dtype=low):
            return model["head"](embed(x))

    # The batch comes from host memory every step, as in a training loop (penny-train's step takes host pixels too):
    # on CUDA from pinned memory with a non-blocking copy, as DataLoader(pin_memory=True) + .to(non_blocking=True) do.
    x_host = torch.randn(args.batch, 3, c["image_size"], c["image_size"], dtype=torch.float32)
    if device.type == "cuda":
        x_host = x_host.pin_memory()
    batch = (lambda: x_host.to(device, non_blocking=True)) if device.type == "cuda" else (lambda: x_host)
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

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

        scaler = torch.amp.GradScaler(device.type) if args.precision == "fp16" else None

        def step():
            loss = F.cross_entropy(forward(batch()).float(), y)
            opt.zero_grad(set_to_none=True)
            if scaler:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            return loss.item()   # penny-train's step returns the loss too
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                return forward(batch()).float().cpu()   # penny-train's predict returns host logits

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)

    med = statistics.median(times)
    print(json.dumps({
        "backbone": args.backbone, "mode": args.mode, "batch": args.batch,
        "threads": torch.get_num_threads(), "steps": args.steps,
        "ms_per_step_median": round(med, 3), "ms_per_step_min": round(min(times), 3),
        "ms_per_step_max": round(max(times), 3),
        "img_per_s": round(args.batch * 1000.0 / med, 3),
        "torch_version": torch.__version__, "impl": impl, "device": str(device), "precision": args.precision,
        "peak_memory_mib": (round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                            if device.type == "cuda" else None),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

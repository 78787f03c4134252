#!/usr/bin/env python3
"""penny-train's bridge to Sony's IMX500 toolchain: a penny-train model, as the PyTorch module its graph IR emits
(src/export/torch-module.ts) with a checkpoint's weights, quantized by model-compression-toolkit (MCT) for the IMX500
target platform, exported to ONNX and compiled by imx500-converter (imxconv-pt). Run by `penny-train imx500` inside
the environment `npm run setup:imx500` makes; it writes a JSON summary for the TypeScript side to read.

  python convert.py --module net.py --checkpoint model_best.pt --calibration calib.pt --output DIR --result out.json
                    [--test test.pt --logits DIR]
"""
import argparse
import functools
import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback
import types
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import torch

TIMES = {}


def timed(name, fn):
    t = time.perf_counter()
    out = fn()
    TIMES[name] = round(time.perf_counter() - t, 2)
    return out


def import_mct():
    """MCT imports edge-mdt-cl, which imports torchvision only for its object-detection layers (NMS); PyPI's
    torchvision is CUDA-linked and does not import beside the CPU torch. So torchvision is left out of edgemdt_cl's
    requirement check and given an empty module for that one import, removed again after it, so MCT still sees no
    torchvision (else it would reach for torchvision.transforms). Nothing penny-train's models use needs it."""
    if importlib.util.find_spec("torchvision") is None:
        import edgemdt_cl
        edgemdt_cl.required_libraries["torch"] = [r for r in edgemdt_cl.required_libraries["torch"] if not r.startswith("torchvision")]
        sys.modules["torchvision"] = types.ModuleType("torchvision")
        try:
            import edgemdt_cl.pytorch  # noqa: F401
        finally:
            del sys.modules["torchvision"]
    import model_compression_toolkit as mct
    return mct


def torchscript_onnx_export():
    """torch >= 2.9 exports ONNX with dynamo by default (which needs onnxscript, and whose graphs the converter does
    not take); MCT 2.5.1 calls torch.onnx.export without saying, so the default here is the TorchScript exporter."""
    orig = torch.onnx.export

    @functools.wraps(orig)
    def export(*args, **kwargs):
        kwargs.setdefault("dynamo", False)
        return orig(*args, **kwargs)
    torch.onnx.export = export


def load_module(path, checkpoint):
    spec = importlib.util.spec_from_file_location("penny_net", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    state = torch.load(checkpoint, weights_only=True)
    return mod.PennyNet().load_penny_state(state["model_state"] if "model_state" in state else state).eval()


def converter_outputs(outdir):
    """What imxconv-pt wrote: its files, the memory report's figures, dnnParams.xml's L2 sizes, packerOut.zip."""
    info = {"files": sorted(os.path.relpath(os.path.join(d, f), outdir) for d, _, fs in os.walk(outdir) for f in fs)}
    for rel in info["files"]:
        p = os.path.join(outdir, rel)
        if rel.endswith("_MemoryReport.json"):
            with open(p) as f:
                rep = json.load(f)
            mem = rep.get("Memory Report", rep)
            info["memory_report"] = rel
            info["memory"] = {k: v for k, v in mem.items() if not isinstance(v, (list, dict))}
        elif rel.endswith("dnnParams.xml"):
            info["dnn_params"] = rel
            l2 = ET.parse(p).getroot().find("l2memory")
            if l2 is not None:
                info["l2memory_bytes"] = {k: int(v) for k, v in l2.attrib.items() if v.isdigit()}
        elif rel.endswith("packerOut.zip"):
            info["packer_out"] = rel
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--calibration", required=True, help="a torch.save'd float tensor [N, 3, H, W], normalised as the model reads it")
    ap.add_argument("--output", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--name", default="model")
    ap.add_argument("--test", help="a torch.save'd float tensor of test inputs: fp32 and MCT int8 logits are written to --logits")
    ap.add_argument("--logits")
    args = ap.parse_args()
    os.makedirs(args.output, exist_ok=True)
    result = {"times_s": TIMES}

    mct = timed("import", import_mct)
    torchscript_onnx_export()
    from edgemdt_tpc import get_target_platform_capabilities

    model = load_module(args.module, args.checkpoint)
    calib = torch.load(args.calibration, weights_only=True)
    batches = [calib[i:i + 8] for i in range(0, len(calib), 8)]

    def representative_data():
        for b in batches:
            yield [b]

    tpc = get_target_platform_capabilities(tpc_version="1.0", device_type="imx500")
    onnx_path = os.path.join(args.output, f"{args.name}_mct.onnx")
    try:
        q_model, _ = timed("quantize", lambda: mct.ptq.pytorch_post_training_quantization(model, representative_data, target_platform_capabilities=tpc))
        timed("export", lambda: mct.exporter.pytorch_export_model(q_model, save_model_path=onnx_path, repr_dataset=representative_data))
    except Exception as e:   # MCT's own reason, for penny-train to report (the traceback goes to stderr only)
        traceback.print_exc()
        result["mct_error"] = f"{type(e).__name__}: {e}".strip()
        with open(args.result, "w") as f:
            json.dump(result, f, indent=1)
        return 0
    result["onnx"] = os.path.basename(onnx_path)

    if args.test:
        import onnxruntime as ort
        from mct_quantizers import get_ort_session_options
        x = torch.load(args.test, weights_only=True)
        sess = ort.InferenceSession(onnx_path, get_ort_session_options(), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name

        def both():
            with torch.no_grad():
                fp32 = torch.cat([model(x[i:i + 32]) for i in range(0, len(x), 32)]).numpy()
            int8 = np.concatenate([sess.run(None, {name: x[i:i + 32].numpy()})[0] for i in range(0, len(x), 32)])
            return fp32, int8
        fp32, int8 = timed("test", both)
        os.makedirs(args.logits, exist_ok=True)
        fp32.astype("<f4").tofile(os.path.join(args.logits, "fp32.f32"))
        int8.astype("<f4").tofile(os.path.join(args.logits, "mct_int8.f32"))

    conv_dir = os.path.join(args.output, "imxconv")
    bindir = os.path.dirname(sys.executable)   # sdspconv, the compiler imxconv-pt runs, lies beside this python
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    proc = timed("convert", lambda: subprocess.run(["imxconv-pt", "-i", onnx_path, "-o", conv_dir, "--overwrite-output"],
                                                   capture_output=True, text=True, env=env))
    with open(os.path.join(args.output, "imxconv.log"), "w") as f:
        f.write(proc.stdout + proc.stderr)
    result["converter_rc"] = proc.returncode
    if proc.returncode == 0:
        result.update(converter_outputs(conv_dir))
    else:
        lines = [l for l in (proc.stdout + proc.stderr).splitlines() if l.strip()]
        result["converter_error"] = "\n".join(lines[-12:])
    with open(args.result, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`ssamba export`: an encoder as an ONNX file for onnxruntime (see ``ssamba.export.to_onnx``)."""

from __future__ import annotations

from ssamba.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export an encoder to ONNX (fbank windows -> tokens, embedding)")
    p.add_argument("model", metavar="MODEL",
                   help="ssamba checkpoint dir, official .pth, hf://OWNER/REPO[@REV][/FILE.pth] or official:NAME")
    p.add_argument("out", metavar="OUT.onnx", help="output ONNX file")
    p.add_argument("--frames", type=int, help="window length in frames (default: the checkpoint's input_tdim)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--quantize", choices=("int8",), help="dynamic int8 quantization of the projection MatMul weights "
                                                        "(x_proj, dt_proj and the scan stay float32)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ssamba.export import to_onnx

    if not args.out.endswith(".onnx"):
        raise ConfigError(f"{args.out}: the output must end in .onnx")
    path = to_onnx(args.model, args.out, frames=args.frames, opset=args.opset, quantize=args.quantize)
    print(f"exported {args.model} -> {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0

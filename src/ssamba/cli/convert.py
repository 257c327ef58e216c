"""`ssamba convert SRC.pth DST_DIR`: official checkpoint (a file or a Hub address) -> self-describing directory."""

from __future__ import annotations

from ssamba.models.checkpoint import convert_official, load


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert an official SSAMBA/SSAST .pth into config.json + model.safetensors")
    p.add_argument("src", help="official checkpoint: a .pth file (DataParallel state_dict), "
                               "hf://OWNER/REPO[@REV]/FILE.pth or official:NAME (see `ssamba models`)")
    p.add_argument("dst", help="output directory")
    p.add_argument("--fstride", type=int, help="new frequency patch stride (positional embedding is resized)")
    p.add_argument("--tstride", type=int, help="new time patch stride (positional embedding is resized)")
    p.add_argument("--input-tdim", type=int, help="new input length in frames (positional embedding is resized)")
    p.add_argument("--num-heads", type=int, help="SSAST attention heads, if not the usual 3/6/12 for the width")
    p.set_defaults(func=run)


def run(args) -> int:
    from ssamba.checkpoints.format import CONFIG_FILE, WEIGHTS_FILE
    from ssamba.cli.outputs import refuse_previous_run

    refuse_previous_run(args.dst, (CONFIG_FILE, WEIGHTS_FILE))
    overrides = {k: v for k, v in (("fstride", args.fstride), ("tstride", args.tstride),
                                   ("input_tdim", args.input_tdim), ("num_heads", args.num_heads)) if v is not None}
    out = convert_official(args.src, args.dst, **overrides)
    model = load(out)
    c = model.config
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}: {c.arch} D={c.embed_dim} depth={c.depth} patches {c.fshape}x{c.tshape} "
          f"stride {c.fstride}x{c.tstride} input {c.input_fdim}x{c.input_tdim} ({params / 1e6:.2f}M parameters)")
    return 0

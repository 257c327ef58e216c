"""`ssamba probe`: linear probe of a frozen encoder (see ``ssamba.downstream.probe.probe``)."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("probe", help="linear probe of a frozen encoder on a labelled dataset",
                       description="Embeds every clip once (cached in --out/embeddings.npz), fits a logistic "
                                   "regression per split or fold, writes results.json, results.md, confusion.png.")
    p.add_argument("--model", required=True, help="checkpoint dir, official .pth, hf:// address or official:NAME")
    p.add_argument("--data", required=True, help="dataset root in its official layout (or a CSV manifest, or "
                                                 "hf-dataset:PATH_OR_ID[?audio=COL&label=COL&...] for a datasets dataset)")
    p.add_argument("--skip-errors", action="store_true", help="leave out undecodable rows of an hf-dataset: source")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--dataset", default="auto", help="reader name (esc50, speechcommands_v2, audioset, voxceleb1, "
                                                      "iemocap, folder, csv) or 'auto' to detect from the layout")
    p.add_argument("--features", default=None, help="feature preset (audioset, esc50, speechcommands); default: the dataset's")
    p.add_argument("--weight-decay", type=float, default=None, help="L2 penalty (default 1/N, as scikit-learn C=1)")
    p.add_argument("--folds", type=int, nargs="*", default=None, help="test folds to run (default all)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from ssamba.cli.outputs import refuse_previous_run
    from ssamba.downstream.probe import ProbeConfig, probe
    from ssamba.integrations.hf_datasets import manifest_for

    refuse_previous_run(args.out, ("results.json",))  # embeddings.npz alone: an unfinished probe, resumed
    probe(args.model, args.data, args.out, dataset=args.dataset, features=args.features, folds=args.folds,
          config=ProbeConfig(weight_decay=args.weight_decay), device=args.device,
          manifest=manifest_for(args.data, skip_errors=args.skip_errors))
    print((Path(args.out) / "results.md").read_text())
    return 0

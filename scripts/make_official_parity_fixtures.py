#!/usr/bin/env python
"""Make the official-parity fixtures in tests/fixtures/official/ by running the OFFICIAL model code.

Nothing from the ssamba package is imported here: the expected outputs come from the official
SSAMBA ``AMBAModel`` (SiavashShams/ssamba, with the Vim fork hustvl/Vim at 6143d07 for
``models_mamba.VisionMamba`` and ``mamba_ssm.modules.mamba_simple.Mamba``) and the official SSAST
``ASTModel`` (YuanGongND/ssast, with timm 0.4.5), on CPU. Only the CUDA extensions are replaced by
pure-torch equivalents: ``selective_scan_cuda.fwd`` calls the official ``selective_scan_ref`` of the
same Vim commit, ``causal_conv1d_cuda.causal_conv1d_fwd`` is a depthwise ``F.conv1d`` with left
padding (+ SiLU). torchvision and transformers (imported but unused by these models) are stubbed.

Where the code comes from (never committed, read into a temp dir):
  * git repositories given by --ssamba-git / --vim-git / --ssast-git (a local clone or bare git dir;
    by default the /work/.mirror/<owner>+<name>/repo snapshots if present, else cloned from GitHub);
  * timm 0.4.5 and einops wheels via ``pip download --no-deps`` into the temp dir, imported from the
    wheel files (nothing is installed into any environment).

Usage: python scripts/make_official_parity_fixtures.py [--out tests/fixtures/official]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

REPOS = {  # name: (GitHub owner/name, pinned commit)
    "ssamba": ("SiavashShams/ssamba", "019b276c2cde80bb5d58f51e589eb5b441a73ead"),
    "vim": ("hustvl/Vim", "6143d07b3dd31f904c63840a19e22d95d1124493"),
    "ssast": ("YuanGongND/ssast", "a1a3eecb94731e226308a6812f2fbf268d789caf"),
}

# small random-init configuration (the fixture must stay < 2 MB)
BATCH, MEL, FRAMES_MAX = 2, 128, 80
PRETRAIN_FRAMES = 64            # pretraining geometry: 16x16 patches, stride 16 -> grid 8 x 4
FINETUNE_FRAMES = (80, 40)      # stride 10 -> grids 12 x 7 (time interpolated) and 12 x 3 (time cropped)
SSAMBA_DIM, SSAMBA_DEPTH = 64, 4
SSAST_DIM, SSAST_DEPTH, SSAST_HEADS = 64, 2, 4
NUM_MASKED = 12


def git_dir(name: str, given: str | None, tmp: Path) -> str:
    """A git dir holding the pinned commit: the given one, the local mirror, or a fresh clone."""
    slug, _ = REPOS[name]
    candidates = [given] if given else [f"/work/.mirror/{slug.replace('/', '+')}/repo"]
    for cand in candidates:
        if cand and Path(cand).exists():
            return cand
    target = tmp / f"{name}.git"
    subprocess.run(["git", "clone", "--bare", "--quiet", f"https://github.com/{slug}", str(target)], check=True)
    return str(target)


def extract(gitdir: str, commit: str, paths: list[str], dest: Path) -> None:
    """Extract ``paths`` of ``commit`` from a git dir into ``dest`` (git archive | tar)."""
    data = subprocess.run(["git", "--git-dir", gitdir, "archive", "--format=tar", commit, *paths],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")


class _StubModule(types.ModuleType):
    """A package whose every attribute is a MagicMock: for imports the model code never really uses."""

    __path__: list = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return mock.MagicMock(name=f"{self.__name__}.{name}")


class _StubFinder:
    """Import hook answering torchvision/transformers/wandb (and their submodules) with _StubModule."""

    STUBBED = ("torchvision", "transformers", "wandb")

    def find_spec(self, fullname, path=None, target=None):
        import importlib.machinery
        if fullname.split(".")[0] in self.STUBBED:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        pass


def install_stubs() -> None:
    """sys.modules stand-ins for CUDA extensions and for packages the model code imports but never uses."""
    sys.meta_path.insert(0, _StubFinder())

    def causal_conv1d_fwd(x, weight, bias, *rest):
        """causal depthwise conv over the last axis; the last positional argument is "apply SiLU"."""
        width = weight.shape[-1]
        out = F.conv1d(x, weight.unsqueeze(1), bias, padding=width - 1, groups=x.shape[1])[..., :x.shape[-1]]
        return F.silu(out) if rest and rest[-1] else out

    conv_cuda = types.ModuleType("causal_conv1d_cuda")
    conv_cuda.causal_conv1d_fwd = causal_conv1d_fwd
    sys.modules["causal_conv1d_cuda"] = conv_cuda

    def selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        """Same outputs as the CUDA kernel (out, intermediates[, out_z]) from the official pure-torch reference."""
        ref = sys.modules["mamba_ssm.ops.selective_scan_interface"].selective_scan_ref
        out = ref(u, delta, A, B, C, D, None, delta_bias, delta_softplus)
        if z is None:
            return out, None
        return out, None, out * F.silu(z)

    scan_cuda = types.ModuleType("selective_scan_cuda")
    scan_cuda.fwd = selective_scan_fwd
    sys.modules["selective_scan_cuda"] = scan_cuda


def perturb_(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Move every parameter away from its symmetric init (A_log == A_b_log, D == 1, LayerNorm 1/0, ...)
    so that swapped or ignored parameters change the outputs."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dtype.is_floating_point and p.numel() > 1:
                scale = 0.2 * (float(p.std()) if float(p.std()) > 0 else 1.0)
                p.add_(torch.randn(p.shape, generator=generator) * scale)


def last_output_of(module: torch.nn.Module) -> dict:
    """Record the output of the LAST call of ``module`` (SSAMBA calls norm_f twice)."""
    store: dict = {}
    module.register_forward_hook(lambda _m, _i, out: store.__setitem__("out", out.detach().clone()))
    return store


def fixed_masks(model, indices: torch.Tensor) -> None:
    """Make the official random mask generator return our fixed per-sample indices."""
    rows = iter(list(indices))
    model.gen_maskid_patch = lambda sequence_len=0, mask_size=0, cluster=3: next(rows)


def run_official(model_cls, pretrain_kwargs: dict, finetune_kwargs, fbank: torch.Tensor, mask_index, tmp: Path,
                 name: str, init_seed: int) -> tuple[dict, dict]:
    """Build, perturb and save the official pretraining model; run it and its fine-tuning rebuilds."""
    torch.manual_seed(init_seed)
    model = model_cls(**pretrain_kwargs)
    perturb_(model, torch.Generator().manual_seed(init_seed + 1))
    model.eval()
    dp_state = {f"module.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    pth = tmp / f"{name}.pth"
    torch.save(dp_state, pth)
    final_norm = model.v.norm_f if hasattr(model.v, "norm_f") else model.v.norm
    expected: dict = {}
    with torch.no_grad():
        tokens = last_output_of(final_norm)
        model.mlp_head = torch.nn.Identity()
        x = fbank[:, :PRETRAIN_FRAMES]
        expected["pooled_pt"] = model(x, task="ft_avgtok")
        expected["tokens_pt"] = tokens["out"]
        fixed_masks(model, mask_index)
        expected["mse_masked"] = model(x, task="pretrain_mpg", cluster=True, mask_patch=mask_index.shape[1])
        expected["tokens_masked"] = tokens["out"]
        for frames in FINETUNE_FRAMES:
            ft = model_cls(**finetune_kwargs(frames, str(pth)))
            ft.eval()
            ft.mlp_head = torch.nn.Identity()
            ft_tokens = last_output_of(ft.v.norm_f if hasattr(ft.v, "norm_f") else ft.v.norm)
            expected[f"pooled_ft{frames}"] = ft(fbank[:, :frames], task="ft_avgtok")
            expected[f"tokens_ft{frames}"] = ft_tokens["out"]
    return dp_state, expected


def ssamba_vision_config(frames: int, stride: int) -> dict:
    """The official pretraining/fine-tuning shell scripts' Vim settings, at a small width and depth."""
    return {"img_size": (MEL, frames), "patch_size": 16, "stride": stride, "embed_dim": SSAMBA_DIM,
            "depth": SSAMBA_DEPTH, "channels": 1, "num_classes": 2, "drop_rate": 0.0, "drop_path_rate": 0.1,
            "norm_epsilon": 1e-5, "rms_norm": False, "residual_in_fp32": False, "fused_add_norm": False,
            "if_rope": False, "if_rope_residual": False, "bimamba_type": "v2", "if_bidirectional": True,
            "final_pool_type": "none", "if_abs_pos_embed": True, "if_bimamba": False, "if_cls_token": True,
            "if_devide_out": True, "use_double_cls_token": False, "use_middle_cls_token": False}


def load_module(name: str, path: Path):
    """Import a single official source file under a chosen module name."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def phase_ssamba(code: Path, tmp: Path, inputs: dict) -> tuple[dict, dict]:
    """Official AMBAModel (Vim v2 mixer), with the timm the SSAMBA repo pins (1.0.3)."""
    sys.path[:0] = [str(code / "vim" / "vim"), str(code / "vim" / "mamba-1p1p1"), str(code / "vim" / "causal-conv1d")]
    import models_mamba  # noqa: F401  (imported first: both_models.py swallows its ImportError)
    with contextlib.redirect_stdout(io.StringIO()):
        both = load_module("official_both_models", code / "ssamba" / "src" / "models" / "both_models.py")
    pre = dict(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=MEL, input_tdim=PRETRAIN_FRAMES,
               model_size="tiny", pretrain_stage=True, vision_mamba_config=ssamba_vision_config(PRETRAIN_FRAMES, 16))

    def finetune(frames, pth):
        return dict(label_dim=2, fshape=16, tshape=16, fstride=10, tstride=10, input_fdim=MEL, input_tdim=frames,
                    model_size="tiny", pretrain_stage=False, load_pretrained_mdl_path=pth,
                    vision_mamba_config=ssamba_vision_config(frames, 10))

    with contextlib.redirect_stdout(io.StringIO()):
        return run_official(both.AMBAModel, pre, finetune, inputs["fbank"], inputs["mask_index"], tmp, "ssamba",
                            init_seed=0)


def phase_ssast(code: Path, tmp: Path, inputs: dict) -> tuple[dict, dict]:
    """Official ASTModel with timm 0.4.5 DeiT blocks; only timm.create_model is swapped for a small DeiT."""
    import timm
    from timm.models.vision_transformer import DistilledVisionTransformer
    assert timm.__version__ == "0.4.5", timm.__version__

    def small_deit(_name, pretrained=False, **_kw):
        return DistilledVisionTransformer(patch_size=16, embed_dim=SSAST_DIM, depth=SSAST_DEPTH,
                                          num_heads=SSAST_HEADS, num_classes=2)

    timm.create_model = small_deit
    with contextlib.redirect_stdout(io.StringIO()):
        ast_models = load_module("official_ast_models", code / "ssast" / "src" / "models" / "ast_models.py")
    pre = dict(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=MEL, input_tdim=PRETRAIN_FRAMES,
               model_size="tiny", pretrain_stage=True)

    def finetune(frames, pth):
        return dict(label_dim=2, fshape=16, tshape=16, fstride=10, tstride=10, input_fdim=MEL, input_tdim=frames,
                    model_size="tiny", pretrain_stage=False, load_pretrained_mdl_path=pth)

    with contextlib.redirect_stdout(io.StringIO()):
        return run_official(ast_models.ASTModel, pre, finetune, inputs["fbank"], inputs["mask_index"], tmp, "ssast",
                            init_seed=10)


PHASE_WHEELS = {"ssamba": ["timm-1.0.3", "einops-0.8.0"], "ssast": ["timm-0.4.5", "einops-0.8.0"]}
WHEELS = ["timm==1.0.3", "timm==0.4.5", "einops==0.8.0"]


def run_phase(phase: str, work: Path, wheels: Path) -> None:
    """Child process: put this phase's wheels on sys.path, stub CUDA/unused imports, run the official model."""
    for prefix in PHASE_WHEELS[phase]:
        sys.path.insert(0, str(next(wheels.glob(prefix + "-*.whl"))))
    install_stubs()
    inputs = torch.load(work / "inputs.pt")
    fn = phase_ssamba if phase == "ssamba" else phase_ssast
    state, expected = fn(work / "code", work, inputs)
    torch.save({"state": state, "expected": expected}, work / f"{phase}_result.pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "official"))
    ap.add_argument("--ssamba-git"), ap.add_argument("--vim-git"), ap.add_argument("--ssast-git")
    ap.add_argument("--wheels", help="directory that already holds the timm/einops wheels")
    ap.add_argument("--phase", choices=["ssamba", "ssast"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.phase:
        run_phase(args.phase, Path(args.work), Path(args.wheels))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="official-parity-") as tmp_name:
        work = Path(tmp_name)
        code = work / "code"
        extract(git_dir("vim", args.vim_git, work), REPOS["vim"][1],
                ["vim/models_mamba.py", "vim/rope.py", "mamba-1p1p1/mamba_ssm", "causal-conv1d/causal_conv1d"],
                code / "vim")
        extract(git_dir("ssamba", args.ssamba_git, work), REPOS["ssamba"][1], ["src/models/both_models.py"],
                code / "ssamba")
        extract(git_dir("ssast", args.ssast_git, work), REPOS["ssast"][1], ["src/models/ast_models.py"],
                code / "ssast")
        wheels = Path(args.wheels) if args.wheels else work / "wheels"
        if not args.wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheels),
                            *WHEELS], check=True)
        g = torch.Generator().manual_seed(1234)
        fbank = torch.randn(BATCH, FRAMES_MAX, MEL, generator=g)
        grid_pt = (MEL // 16) * (PRETRAIN_FRAMES // 16)
        mask_index = torch.stack([torch.randperm(grid_pt, generator=g)[:NUM_MASKED] for _ in range(BATCH)])
        inputs = {"fbank": fbank, "mask_index": mask_index}
        torch.save(inputs, work / "inputs.pt")
        results = {}
        for phase in ("ssamba", "ssast"):  # separate processes: they need different timm versions
            subprocess.run([sys.executable, __file__, "--phase", phase, "--work", str(work), "--wheels", str(wheels)],
                           check=True)
            results[phase] = torch.load(work / f"{phase}_result.pt")

    torch.save(inputs, out / "inputs.pt")
    for phase, result in results.items():
        torch.save(result["state"], out / f"{phase}_official.pth")
        torch.save({k: v.contiguous() for k, v in result["expected"].items()}, out / f"{phase}_expected.pt")
    meta = {
        "made_by": "scripts/make_official_parity_fixtures.py",
        "official_commits": {name: {"repo": slug, "commit": commit} for name, (slug, commit) in REPOS.items()},
        "wheels": {"ssamba": PHASE_WHEELS["ssamba"], "ssast": PHASE_WHEELS["ssast"]},
        "pretrain_frames": PRETRAIN_FRAMES, "finetune_frames": list(FINETUNE_FRAMES), "finetune_stride": 10,
        "ssamba": {"embed_dim": SSAMBA_DIM, "depth": SSAMBA_DEPTH},
        "ssast": {"embed_dim": SSAST_DIM, "depth": SSAST_DEPTH, "num_heads": SSAST_HEADS},
        "num_masked": NUM_MASKED,
        "note": "random init, then every parameter perturbed (A_log != A_b_log, D != 1, norms != 1/0)",
    }
    (out / "fixtures.json").write_text(json.dumps(meta, indent=2) + "\n")
    total = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {out} ({total / 1e6:.2f} MB)")
    for phase, result in results.items():
        print(phase, {k: tuple(v.shape) for k, v in result["expected"].items()})


if __name__ == "__main__":
    main()

"""torchrun --nproc_per_node=2 (gloo, CPU): ranks stay in sync, a global batch is split over the ranks, and the
checkpoint loads in one process."""

import os
import subprocess
import sys

import torch
from test_resume import REPO, make_audio_folder

from ssamba.pretrain import load_pretrained_task
from ssamba.train.metrics_log import read_metrics

CHECK = """
import os, sys, torch, torch.distributed as dist
from ssamba.pretrain import run_pretraining
from ssamba.train import distributed as D
# keep the process group alive after fit so parameters can be compared across ranks
D.shutdown = lambda info: None
import ssamba.train.trainer as T
T.shutdown = lambda info: None
captured = {}
orig = T.Trainer.fit
def fit(self, resume=False):
    out = orig(self, resume)
    captured['task'] = self.task
    return out
T.Trainer.fit = fit
run_pretraining(sys.argv[1], sys.argv[3], sys.argv[2], overrides=sys.argv[4:])
flat = torch.cat([p.detach().flatten() for p in captured['task'].parameters()])
gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
if dist.get_rank() == 0:
    diff = max((g - gathered[0]).abs().max().item() for g in gathered)
    print('MAXDIFF', diff, 'WORLD', dist.get_world_size(), 'NORM', flat.norm().item())
dist.destroy_process_group()
# Leave without running C++ static destructors: a rank was once seen aborting at interpreter exit
# ("terminate called without an active exception") after all its work was done. That is gloo's
# worker threads meeting interpreter finalisation, an open upstream problem (pytorch/pytorch
# issue 190489; the atexit fix of PR 179291 was abandoned); what is checked here is the training.
sys.stdout.flush()
os._exit(0)
"""


def test_torchrun_two_processes_gloo(tmp_path):
    data = make_audio_folder(tmp_path / "audio", n=16)
    out = tmp_path / "run"
    script = tmp_path / "ddp_check.py"
    script.write_text(CHECK)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", str(script),
           str(REPO / "configs/pretrain/ssamba_tiny_cpu.yaml"), str(out), str(data),
           "model.overrides.depth=2", "model.overrides.embed_dim=32", "data.crop_frames=128", "train.batch_size=4",
           "train.global_batch=true",
           "train.max_steps=4", "train.checkpoint_every=2", "train.num_workers=0", "train.num_threads=1",
           "train.progress=false", "train.device=cpu"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(row for row in res.stdout.splitlines() if row.startswith("MAXDIFF"))
    _, diff, _, world, _, norm = line.split()
    assert int(world) == 2 and float(diff) == 0.0 and float(norm) > 0
    rows = read_metrics(out / "metrics.csv")  # rank 0 alone logs: one row per step
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    # global batch 4 = 2 clips per rank: 16 clips make 4 steps per epoch (4 per rank would make 2)
    assert [r["epoch"] for r in rows] == [0, 0, 0, 0]
    assert all(r["clips_per_s"] > 0 for r in rows)
    task = load_pretrained_task(out)  # the DDP checkpoint loads in a single process
    saved = torch.cat([p.detach().flatten() for p in task.parameters()])
    assert abs(saved.norm().item() - float(norm)) < 1e-3 * float(norm)
    assert not any(k.startswith("module.") for k in task.state_dict())

"""Whole-utterance scoring in fixed-length chunks: every frame of a long utterance is encoded, and the
chunk embeddings are averaged by their real frames."""

import numpy as np
import pytest
import soundfile as sf
import torch

import ssamba
from ssamba.audio import load_audio
from ssamba.data.manifests import AudioItem
from ssamba.downstream.chunks import UtteranceChunks, predict_chunked, split_chunks
from ssamba.downstream.finetune import FinetuneTask
from ssamba.features.extractor import FeatureConfig, FeatureExtractor


def test_split_chunks_covers_every_frame_and_pads_the_tail():
    fbank = torch.randn(2500, 8)
    chunks, frames = split_chunks(fbank, 1024)
    assert chunks.shape == (3, 1024, 8) and frames.tolist() == [1024, 1024, 452]
    assert torch.equal(chunks.reshape(-1, 8)[:2500], fbank) and chunks[2, 452:].abs().sum() == 0
    short, frames = split_chunks(fbank[:100], 1024)
    assert short.shape == (1, 1024, 8) and frames.tolist() == [100]


@pytest.mark.parametrize("layers", ["last", "weighted_sum"])
def test_predict_chunked_averages_chunk_embeddings_by_frames(tmp_path, layers):
    rng = np.random.default_rng(0)
    path = tmp_path / "long.flac"
    sf.write(path, (0.1 * rng.standard_normal(int(16000 * 3.0))).astype(np.float32), 16000)  # 300 frames
    features = FeatureConfig.preset("speechcommands")  # 128-frame chunks
    torch.manual_seed(0)
    encoder = ssamba.create_model("ssast_tiny", depth=2, embed_dim=32, num_heads=2, input_tdim=128)
    task = FinetuneTask(encoder, 3, layers=layers).eval()
    with torch.no_grad():
        task.head.linear.weight.normal_()
    data = UtteranceChunks([AudioItem(path=path, labels=(1,))], 3, features)
    chunks, frames, target = data[0]
    assert chunks.shape[0] == 3 and frames.tolist() == [128, 128, 42] and target.tolist() == [0, 1, 0]
    scores, targets = predict_chunked(task, data, batch_size=2)  # chunks encoded in two groups
    with torch.no_grad():
        w = frames / frames.sum()
        parts = task.embed(chunks)
        if layers == "weighted_sum":
            embedding = [(p * w[:, None]).sum(0, keepdim=True) for p in parts]
        else:
            embedding = (parts * w[:, None]).sum(0, keepdim=True)
        expected = torch.softmax(task.head(embedding), -1)
        first_crop = torch.softmax(task.logits(FeatureExtractor(features)(load_audio(path))[None]), -1)
    assert np.allclose(scores, expected.numpy(), atol=1e-5) and targets.tolist() == [[0, 1, 0]]
    assert not np.allclose(scores, first_crop.numpy(), atol=1e-4)  # not the single-crop score


def test_finetune_scores_whole_utterances_when_asked(tmp_path):
    from dataset_layouts import write_csv_dataset

    from ssamba.downstream.finetune import FinetuneConfig, evaluate, finetune
    from ssamba.train.config import TrainConfig

    csv_path = write_csv_dataset(tmp_path / "data", ["a", "b"], per_class=4, folds=2, seconds=2.0, spread=10)
    config = FinetuneConfig(dataset="csv", model="ssamba_tiny", fstride=16, tstride=16, features="speechcommands",
                            layers="weighted_sum", eval_chunks=True, folds=[1],
                            model_overrides=dict(depth=2, embed_dim=32, scan_backend="chunked"))
    train = TrainConfig(epochs=1, max_steps=1, batch_size=4, warmup_steps=0, num_workers=0, num_threads=1,
                        progress=False, tensorboard=False, device="cpu")
    results = finetune(config, train, csv_path, tmp_path / "run")
    again = evaluate(tmp_path / "run", csv_path, tmp_path / "eval")  # task.json carries eval_chunks
    assert results["runs"]["fold1"]["accuracy"] == pytest.approx(again["runs"]["fold1"]["accuracy"])
    meta = (tmp_path / "run" / "fold1" / "model" / "task.json").read_text()
    assert '"eval_chunks": true' in meta and '"layers": "weighted_sum"' in meta

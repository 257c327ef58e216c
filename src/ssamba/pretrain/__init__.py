"""ssamba.pretrain: masked-patch self-supervised pretraining (SSAST/SSAMBA objectives)."""

from ssamba.pretrain.masking import batch_masks, cluster_mask_indices, random_mask_indices
from ssamba.pretrain.objectives import info_nce, patch_mse, prediction_head
from ssamba.pretrain.task import MaskedPatchConfig, MaskedPatchPretraining

__all__ = ["batch_masks", "cluster_mask_indices", "random_mask_indices", "info_nce", "patch_mse",
           "prediction_head", "MaskedPatchConfig", "MaskedPatchPretraining"]

from ssamba.pretrain.run import DataConfig, load_pretrained_task, load_run_config, run_pretraining  # noqa: E402

__all__ += ["DataConfig", "load_pretrained_task", "load_run_config", "run_pretraining"]

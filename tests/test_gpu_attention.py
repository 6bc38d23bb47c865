"""Attention at paper dims on a GPU: 90-dimensional heads padded to a multiple of 8 (an efficient SDPA kernel
applies, results unchanged), and the cap on a scan's depth tokens (a longer scan is a QC rejection)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from ctvlp.io.volume import Volume
from ctvlp.models.combiner import CombinerSpec, FeatureCombiner
from ctvlp.models.rope import grid_index
from ctvlp.models.vit_blocks import attention
from ctvlp.preprocess.shard import process_volume
from ctvlp.preprocess.transform import PreprocessSpec, depth_token_count

def qkv_mask(b: int = 3, h: int = 12, n: int = 37, d: int = 90, device: str = "cpu", dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d, generator=g).to(device, dtype) for _ in range(3))
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, 20:] = False  # a padded scan in the batch
    mask[2, 5:] = False
    return q, k, v, mask.to(device)


@pytest.mark.parametrize("d", [90, 45, 24, 64])
def test_padded_head_dim_equals_unpadded_attention(d):
    """Zero columns on q, k, v with the original scale 1/sqrt(d): the same result (1e-6), any head dim."""
    q, k, v, mask = qkv_mask(d=d)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # default scale d^-0.5
    out = attention(q, k, v, mask)
    assert out.shape == reference.shape
    assert torch.allclose(out, reference, atol=1e-6, rtol=0)
    assert torch.allclose(attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=0)


def test_combiner_with_90_dim_heads_is_unchanged_by_batch_padding():
    """The paper's 90-d heads (1080 / 12; here 180 / 2): a scan's output does not change when it shares a batch
    with padding (its padded keys are masked, the padded head columns dropped)."""
    torch.manual_seed(0)
    combiner = FeatureCombiner(CombinerSpec(16, 180, 1, 2)).eval()
    assert combiner.blocks[0].attn.head_dim == 90
    index = grid_index((2, 2, 3), "cpu")[None].expand(2, -1, -1)
    x = torch.randn(1, 12, 32)
    tokens = torch.cat([x, torch.randn(1, 12, 32)])
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 6:] = False
    grid = torch.tensor([[2, 2, 3], [2, 2, 3]])
    with torch.no_grad():
        batched = combiner.scan(tokens, index, grid, mask)
        single = combiner.scan(x, index[:1], grid[:1], mask[:1])
        shorter = combiner.scan(tokens[1:, :6], index[1:, :6], grid[1:], mask[1:, :6])
    assert torch.allclose(batched[0], single[0], atol=1e-6)
    assert torch.allclose(batched[1], shorter[0], atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_efficient_kernel_takes_the_padded_heads_on_cuda(dtype):
    """With only the memory-efficient kernel allowed, the masked 90-d attention runs (unpadded it cannot)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v, mask = qkv_mask(b=4, n=600, device="cuda", dtype=dtype)
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
        out = attention(q, k, v, mask)
        with pytest.raises(RuntimeError):
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    reference = attention(q.float().cpu(), k.float().cpu(), v.float().cpu(), mask.cpu())
    assert torch.allclose(out.float().cpu(), reference, atol=2e-2 if dtype == torch.bfloat16 else 1e-4)


# ---- the depth-token cap ------------------------------------------------------------------------------------

PAPER_PRE = {"spacing_mm": [0.75, 0.75, 3.0], "hu_range": [-1000, 1000], "window_voxels": [128, 128, 32]}
PAPER_MODEL = {"window_encoder": {"patch_voxels": [16, 16, 4]}, "scan_encoder": {"max_depth_tokens": 2048}}


def test_depth_tokens_counted_as_the_feature_layout():
    # 4 x 4 in-plane windows, 6 windows deep of 8 depth patches each: the paper's (4, 4, 6) grid
    assert depth_token_count((512, 512, 192), (128, 128, 32), 4) == 4 * 4 * 48
    spec = PreprocessSpec.from_config(PAPER_PRE, PAPER_MODEL)
    assert spec.max_depth_tokens == 2048 and spec.patch_depth == 4
    assert spec.depth_token_problem((512, 512, 192)) is None
    assert spec.depth_token_problem((512, 512, 512)) is None  # exactly 2048
    problem = spec.depth_token_problem((512, 512, 544))
    assert "2176 depth tokens > model.scan_encoder.max_depth_tokens = 2048" in problem
    assert PreprocessSpec.from_config(PAPER_PRE).depth_token_problem((512, 512, 4096)) is None  # the CLI: no cap
    uncapped = {**PAPER_MODEL, "scan_encoder": {"max_depth_tokens": None}}
    assert PreprocessSpec.from_config(PAPER_PRE, uncapped).depth_token_problem((512, 512, 4096)) is None


def scan(depth: int) -> Volume:
    hu = np.random.default_rng(0).uniform(-1000, 1000, (64, 64, depth)).astype(np.float32)
    return Volume(hu=hu, affine=np.eye(4))


@pytest.mark.parametrize("cap, status", [(300, "rejected"), (512, "ok")])
def test_a_scan_over_the_cap_is_rejected_with_a_qc_reason(cap, status):
    """64 x 64 x 200 voxels at 1 mm, windows 32 x 32 x 8, depth patch 2: 2 x 2 x 100 = 400 depth tokens."""
    spec = PreprocessSpec.from_config({"spacing_mm": [1, 1, 1], "hu_range": [-1000, 1000], "window_voxels": [32, 32, 8]},
                                      {"window_encoder": {"patch_voxels": [8, 8, 2]},
                                       "scan_encoder": {"max_depth_tokens": cap}})
    row = pd.Series({"volume_id": "V00", "source": "scan.nii.gz", "source_kind": "nifti"})
    result, data = process_volume(row, lambda source: scan(200), spec)
    assert result["status"] == status
    if status == "rejected":
        assert data is None
        assert result["reason"] == ("scan too long for the depth path (400 depth tokens > "
                                    "model.scan_encoder.max_depth_tokens = 300; shape (64, 64, 200) after preprocessing)")
    else:
        assert depth_token_count(data.shape, (32, 32, 8), 2) == 400

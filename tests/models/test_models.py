"""Model registry: the paper's models build with the right shapes and counts, and pruning attaches to any."""

from __future__ import annotations

import pytest
import torch
from test_timm_layers import effective_weights, zero_fraction
from torch.nn.utils import parametrize

from ssa_experiments.config.schema import ConfigError, MethodConfig, ModelConfig, PruningConfig
from ssa_experiments.models import build_model, count_params
from ssa_experiments.pruning.masking import mask_sparsity
from ssa_experiments.pruning.methods import make_method

DEIT_SMALL_INPUT = {"patch_size": 8, "depth": 2}  # 16 tokens at 32x32, two blocks: fast on a CPU


@pytest.mark.parametrize(
    ("cfg", "in_ch", "size", "classes", "params"),
    [
        (
            ModelConfig(arch="resnet", depth=18),
            3,
            32,
            10,
            11_173_962,
        ),  # the CIFAR ResNet-18 of the literature
        (ModelConfig(arch="wide_resnet", depth=28, widen_factor=10), 3, 32, 100, 36_536_884),  # WRN-28-10
        (ModelConfig(arch="small_cnn", width=32, depth=2), 1, 16, 10, 19_562),
        (ModelConfig(arch="mlp", width=128, depth=2), 1, 16, 10, 50_698),
    ],
)
def test_paper_models_shapes_and_sizes(
    cfg: ModelConfig, in_ch: int, size: int, classes: int, params: int
) -> None:
    model = build_model(cfg, in_ch, size, classes)
    assert count_params(model) == params
    assert model.eval()(torch.randn(2, in_ch, size, size)).shape == (2, classes)


def test_vit_for_small_images() -> None:
    model = build_model(ModelConfig(arch="vit", width=48, depth=2, heads=3, patch_size=4), 3, 32, 10)
    assert model.patch_embed.num_patches == 64
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_any_timm_model_by_name() -> None:
    model = build_model(ModelConfig(arch="timm", name="resnet10t"), 3, 64, 200)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 200)
    with pytest.raises(ConfigError, match=r"model\.name"):
        build_model(ModelConfig(arch="timm", name="not_a_model_xyz"), 3, 32, 10)


@pytest.mark.parametrize(
    ("cfg", "heads"),
    [
        (ModelConfig(arch="resnet", depth=18), ["fc"]),
        (ModelConfig(arch="vit", width=48, depth=2, heads=3), ["head"]),
        (ModelConfig(arch="timm", name="resnet10t"), ["fc"]),
        (  # two classifiers, head_dist registered last: both are "the last layer"
            ModelConfig(arch="timm", name="deit_tiny_distilled_patch16_224", kwargs=DEIT_SMALL_INPUT),
            ["head", "head_dist"],
        ),
    ],
)
def test_annealing_attaches_to_torchvision_and_timm_models(cfg: ModelConfig, heads: list[str]) -> None:
    model = build_model(cfg, 3, 32, 10)
    m = make_method(MethodConfig(name="temperature_annealing", anneal_epochs=2), PruningConfig(), 0.9, 0)
    m.start(model)
    m.begin_epoch(0, 1)
    m.before_step(0, 0, 1)
    with effective_weights(model) as weights:
        out = model.train()(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert m.report()["sparsity"] == pytest.approx(0.9, abs=1e-4)
    sampled = mask_sparsity({n: mask.train_mask for n, mask in m.masks.items()})[0]
    assert 0.4 < sampled < 0.5  # 0.9 * (1 - tau0), and the forward pass computes with exactly these zeros:
    assert zero_fraction(weights, list(m.modules)) == pytest.approx(sampled, abs=1e-9)
    for head in heads:  # every classifier stays dense by default: no mask, no zero in what forward uses
        assert head not in m.modules
        assert not parametrize.is_parametrized(model.get_submodule(head)), head
        assert zero_fraction(weights, [head]) == 0.0, head


def test_bad_depths_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"model\.depth"):
        build_model(ModelConfig(arch="wide_resnet", depth=27), 3, 32, 10)
    with pytest.raises(ConfigError, match=r"model\.depth"):
        build_model(ModelConfig(arch="resnet", depth=50), 3, 32, 10)


def test_timm_pretrained_from_a_local_file(tmp_path) -> None:
    """No hub here: timm's pretrained_cfg_overlay points pretrained=true at a local weights file."""
    import timm

    source = timm.create_model("resnet10t", num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    cfg = ModelConfig(
        arch="timm", name="resnet10t", pretrained=True,
        kwargs={"pretrained_cfg_overlay": {"file": str(tmp_path / "w.pth")}},
    )  # fmt: skip
    model = build_model(cfg, 3, 32, 10)
    assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)  # backbone loaded
    assert model.fc.out_features == 10  # head re-made for the data set's classes

"""Masks must reach the weights a forward pass computes with, on real timm/torchvision models.

A mask is checked where it matters: ``effective_weights`` records the weight tensors actually handed to
``F.conv1d/2d/3d``, ``F.linear`` and the attention kernels during a forward pass, and the fraction of exact
zeros among those of the pruned layers must be the sparsity the method reports. Models are built without
pretrained weights (offline) and run on 32x32 inputs, batch 1.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode

from ssa_experiments.config.schema import ConfigError, MethodConfig, ModelConfig, PruningConfig
from ssa_experiments.models import build_model
from ssa_experiments.pruning.masking import attach_masks, mask_sparsity, set_mask, weight_name
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.pruning.targets import prunable_modules

SPARSITY = 0.7
_WEIGHT_FUNCS = (F.conv1d, F.conv2d, F.conv3d, F.linear)


def _arg(args: tuple, kwargs: dict, index: int, name: str) -> torch.Tensor:
    return args[index] if len(args) > index else kwargs[name]


class _Recorder(TorchFunctionMode):
    """Attributes each conv/linear/attention weight to the innermost module running when it is used."""

    def __init__(self, stack: list[str], out: dict[str, list[torch.Tensor]]) -> None:
        super().__init__()
        self.stack, self.out = stack, out

    def _record(self, name: str, weight: torch.Tensor | None) -> None:
        if weight is not None:
            self.out.setdefault(name, []).append(weight.detach())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        owner = self.stack[-1] if self.stack else ""
        if func in _WEIGHT_FUNCS:
            self._record(owner, _arg(args, kwargs, 1, "weight"))
        elif (
            func is F.multi_head_attention_forward
        ):  # out_proj's F.linear runs inside, unseen: record it here
            self._record(owner, _arg(args, kwargs, 5, "in_proj_weight"))
            self._record(f"{owner}.out_proj", _arg(args, kwargs, 11, "out_proj_weight"))
        elif func is torch._native_multi_head_attention:  # the inference fast path
            self._record(owner, _arg(args, kwargs, 5, "qkv_weight"))
            self._record(f"{owner}.out_proj", _arg(args, kwargs, 7, "proj_weight"))
        return func(*args, **kwargs)


@contextmanager
def effective_weights(model: nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Within the block, record {module name: [weights its forward passes computed with]} for ``model``.

    The weight is the tensor the kernel receives: after any parametrization (the mask) *and* after whatever
    the module's forward does to it (a weight-standardised conv standardises it).
    """
    names = {id(m): name for name, m in model.named_modules()}
    stack: list[str] = []
    out: dict[str, list[torch.Tensor]] = {}

    def enter(module: nn.Module, _args: tuple) -> None:
        stack.append(names[id(module)])

    def leave(_module: nn.Module, _args: tuple, _output: object) -> None:  # returns None: output unchanged
        stack.pop()

    handles = []
    for m in model.modules():
        handles += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]
    try:
        with _Recorder(stack, out):
            yield out
    finally:
        for h in handles:
            h.remove()


def zero_fraction(weights: dict[str, list[torch.Tensor]], names: list[str]) -> float:
    """Exact zeros among the (first-use) effective weights of ``names``, weighted by size."""
    zeros = sum(int((weights[n][0] == 0).sum()) for n in names)
    return zeros / sum(weights[n][0].numel() for n in names)


def record(model: nn.Module, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    with torch.no_grad(), effective_weights(model.eval()) as weights:
        model(x)
    return weights


def check_effective_sparsity(model: nn.Module, heads: list[str], x: torch.Tensor) -> None:
    """One-shot at 0.7 with the default config (classifier kept dense), then check what the forward uses."""
    m = make_method(MethodConfig(name="one_shot"), PruningConfig(), SPARSITY, 0)
    m.start(model)
    report = m.report()
    weights = record(model, x)
    pruned = list(m.modules)
    # Every weight the forward pass computes with is either pruned (and counted) or a classifier head.
    assert set(weights) == set(pruned) | set(heads)
    assert not set(pruned) & set(heads)
    assert report["prunable_params"] == sum(weights[n][0].numel() for n in pruned)
    # The zeros the forward pass sees are the reported sparsity (global magnitude: exactly round(0.7 * n)).
    assert report["sparsity"] == pytest.approx(SPARSITY, abs=1e-4)
    assert zero_fraction(weights, pruned) == pytest.approx(report["sparsity"], abs=1e-9)
    for head in heads:  # every head is left alone: no mask, dense in the forward pass
        module = model.get_submodule(head)
        assert not parametrize.is_parametrized(module), head
        assert zero_fraction(weights, [head]) == 0.0, head


def test_weight_standardised_conv_is_refused_because_a_mask_would_not_reach_it() -> None:
    model = build_model(ModelConfig(arch="timm", name="resnetv2_50x1_bit"), 3, 32, 10)
    m = make_method(MethodConfig(name="one_shot"), PruningConfig(), SPARSITY, 0)
    with pytest.raises(ConfigError, match=r"^model: layer 'stem\.conv' is a .*StdConv2d.*standardis") as err:
        m.start(model)
    assert err.value.field_name == "model"
    assert not any(parametrize.is_parametrized(mod) for mod in model.modules())  # refused before any mask

    # Why: mask the StdConv2d weights anyway; forward() standardises the masked weight back to dense.
    convs = {n: mod for n, mod in model.named_modules() if isinstance(mod, nn.Conv2d) and n != "head.fc"}
    masks = attach_masks(convs)
    g = torch.Generator().manual_seed(0)
    keep = {n: torch.rand(mod.weight.shape, generator=g) >= SPARSITY for n, mod in convs.items()}
    for name, k in keep.items():
        set_mask(masks[name], k)
    assert mask_sparsity(keep)[0] == pytest.approx(SPARSITY, abs=1e-3)  # what a report would say
    weights = record(model, torch.randn(1, 3, 32, 32))
    assert set(convs) <= set(weights)
    assert zero_fraction(weights, list(convs)) < 0.01  # what the convolutions compute with: dense


def test_distilled_deit_keeps_both_heads_dense() -> None:
    # patch 8 on 32x32 (16 tokens) and 4 of its 12 blocks: CPU-fast; the two heads are what is under test
    kwargs = {"patch_size": 8, "depth": 4}
    cfg = ModelConfig(arch="timm", name="deit_tiny_distilled_patch16_224", kwargs=kwargs)
    model = build_model(cfg, 3, 32, 10)
    check_effective_sparsity(model, ["head", "head_dist"], torch.randn(1, 3, 32, 32))


def test_fastvit_builds_and_its_masks_reach_the_forward_pass() -> None:
    model = build_model(ModelConfig(arch="timm", name="fastvit_t8"), 3, 32, 10)
    check_effective_sparsity(model, ["head.fc"], torch.randn(1, 3, 32, 32))


def test_timm_vit_masks_reach_the_forward_pass() -> None:
    model = build_model(ModelConfig(arch="vit", width=48, depth=2, heads=3, patch_size=4), 3, 32, 10)
    check_effective_sparsity(model, ["head"], torch.randn(1, 3, 32, 32))


def test_torchvision_vit_prunes_multihead_attention_in_proj() -> None:
    """torchvision's ViT is built on nn.MultiheadAttention: its in_proj_weight is pruned and counted."""
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    )
    nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises it: no zero is ours
    check_effective_sparsity(model, ["heads.head"], torch.randn(1, 3, 32, 32))


class _TinyAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = self.attn(h, h, h, need_weights=False)[0]
        return self.fc(h.mean(1))


def test_multihead_attention_in_proj_is_pruned_counted_and_used() -> None:
    torch.manual_seed(0)
    model = _TinyAttention()
    attn = model.attn
    m = make_method(MethodConfig(name="one_shot"), PruningConfig(), SPARSITY, 0)
    m.start(model)
    assert list(m.modules) == ["embed", "attn", "attn.out_proj"]
    assert weight_name(attn) == "in_proj_weight" and parametrize.is_parametrized(attn, "in_proj_weight")
    sizes = model.embed.weight.numel() + attn.in_proj_weight.numel() + attn.out_proj.weight.numel()
    assert m.report()["prunable_params"] == sizes

    # Reference: a plain MHA holding the same weights, in_proj_weight zeroed by hand where the mask is 0.
    keep = m.masks["attn"].eval_mask
    assert 0 < int((~keep).sum()) < keep.numel()
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():  # one_shot zeroed the stored pruned weights: refill them, only the mask remains
        dense_in = torch.randn_like(attn.in_proj_weight)
        attn.parametrizations.in_proj_weight.original.copy_(dense_in)
        ref.in_proj_weight.copy_(torch.where(keep, dense_in, torch.zeros_like(dense_in)))
        ref.in_proj_bias.copy_(attn.in_proj_bias)
        ref.out_proj.weight.copy_(attn.out_proj.weight)  # already masked (out_proj is pruned as a Linear)
        ref.out_proj.bias.copy_(attn.out_proj.bias)
    h = torch.randn(2, 5, 16)
    with torch.no_grad():  # eval + no_grad: torch's fused inference path
        out = attn.eval()(h, h, h, need_weights=False)[0]
        assert torch.allclose(out, ref.eval()(h, h, h, need_weights=False)[0], atol=1e-6)
    out = attn.train()(h, h, h, need_weights=False)[0]  # autograd path (dropout is 0)
    assert torch.allclose(out, ref.train()(h, h, h, need_weights=False)[0], atol=1e-6)
    dense = copy.deepcopy(ref)
    with torch.no_grad():
        dense.in_proj_weight.copy_(dense_in)
    assert not torch.allclose(out, dense(h, h, h, need_weights=False)[0], atol=1e-3)  # the mask matters

    weights = record(model, torch.randn(2, 5, 8))
    assert torch.equal(weights["attn"][0] == 0, ~keep)


def test_multihead_attention_with_separate_qkv_weights_is_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    model.add_module("attn", nn.MultiheadAttention(16, 4, kdim=8, vdim=8))
    model.add_module("fc", nn.Linear(16, 3))
    with pytest.raises(ConfigError, match=r"^model: layer 'attn' is a .*MultiheadAttention.*separate q/k/v"):
        prunable_modules(model)

"""Model registry: small CPU models, the paper's CIFAR models, and any timm model by name.

Every builder takes the input shape and class count from the data set, so ``model=`` and ``data=`` compose
freely. Pruning needs nothing from a model beyond ordinary conv/linear (and ``nn.MultiheadAttention``)
modules; layers a mask cannot reach (weight-standardised convolutions) are refused by
``pruning.targets.prunable_modules``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ssa_experiments.config.schema import ConfigError, ModelConfig
from ssa_experiments.config.targets import check_custom_model, model_data_keywords, one_line, user_arguments


def small_cnn(cfg: ModelConfig, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """``depth`` conv-BN-ReLU-pool blocks doubling from ``width`` channels, global pooling, linear head."""
    layers: list[nn.Module] = []
    c_in, c = in_channels, cfg.width
    for _ in range(cfg.depth):
        layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d(2))
        c_in, c = c, c * 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)


def mlp(cfg: ModelConfig, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """``depth`` hidden layers of ``width`` units."""
    layers: list[nn.Module] = [nn.Flatten()]
    d_in = in_channels * image_size * image_size
    for _ in range(cfg.depth):
        layers += [nn.Linear(d_in, cfg.width), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
        d_in = cfg.width
    layers.append(nn.Linear(d_in, num_classes))
    return nn.Sequential(*layers)


def cnn1d(cfg: ModelConfig, in_channels: int, length: int, num_classes: int) -> nn.Module:
    """A 1-D CNN for (N, C, L) signals (MNIST-1D): ``depth`` blocks of Conv1d (kernel 5, stride 2, padding 2,
    no bias: BN follows) + BatchNorm1d + ReLU, all ``width`` channels, then flatten and a linear head.

    Greydanus's MNIST-1D CNN baseline is the same stack without BN (3 strided convs, 25 channels, flatten,
    ~5.5k weights, ~94 % test). Kernel 5 in every block (the baseline has 5, 3, 3): after three blocks a
    feature sees 29 of the 40 samples, and width 128 has 164k prunable weights, clearly over-parameterised
    for 4000 training signals (prunable = 5 * width * (in_channels + (depth - 1) * width): 10.4k at width 32).
    Flatten rather than global pooling: it is the baseline's head, it keeps where along the signal each
    feature fired (MNIST-1D digits are a few bumps in a fixed order), and on the validation split the two
    heads were level (width 32, 3 seeds: 94.3 vs 93.9 %; width 128: 94.8 vs 95.0 %; 400 val signals, so
    0.25 points each), so nothing argued for changing it.
    """
    if cfg.depth < 1 or cfg.width < 1:
        raise ConfigError(
            "model.depth", f"cnn1d needs depth >= 1 and width >= 1, got {cfg.depth}, {cfg.width}"
        )
    layers: list[nn.Module] = []
    c_in, n = in_channels, length
    for _ in range(cfg.depth):
        layers += [
            nn.Conv1d(c_in, cfg.width, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm1d(cfg.width),
            nn.ReLU(inplace=True),
        ]
        c_in, n = cfg.width, (n - 1) // 2 + 1  # L_out of a kernel-5, stride-2, padding-2 conv
    layers += [nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(c_in * n, num_classes)]
    return nn.Sequential(*layers)


def cifar_resnet(cfg: ModelConfig, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet with the CIFAR stem (3x3 conv, stride 1, no max-pool), as the paper uses.

    ``depth`` 18 or 34 (basic blocks); ``width`` is ignored unless 64 is changed in torchvision itself.
    """
    from torchvision.models import resnet18, resnet34

    builders = {18: resnet18, 34: resnet34}
    if cfg.depth not in builders:
        raise ConfigError("model.depth", f"resnet supports depth 18 or 34, got {cfg.depth}")
    model = builders[cfg.depth](num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


class _WideBlock(nn.Module):
    """Pre-activation basic block of Zagoruyko & Komodakis (2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.shortcut = (
            nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(self.dropout(torch.relu(self.bn2(y))))
        return y + (self.shortcut(o) if self.shortcut is not None else x)


def wide_resnet(cfg: ModelConfig, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """WRN-depth-k for 32x32 inputs (the paper's tables use WRN-28-10: depth=28, widen_factor=10)."""
    if (cfg.depth - 4) % 6:
        raise ConfigError("model.depth", f"wide_resnet depth must be 6n+4 (e.g. 16, 28), got {cfg.depth}")
    n, k = (cfg.depth - 4) // 6, cfg.widen_factor
    widths = [16, 16 * k, 32 * k, 64 * k]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
    for stage in range(3):
        for i in range(n):
            c_in = widths[stage] if i == 0 else widths[stage + 1]
            stride = 2 if (i == 0 and stage > 0) else 1
            layers.append(_WideBlock(c_in, widths[stage + 1], stride, cfg.dropout))
    layers += [
        nn.BatchNorm2d(widths[3]),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(widths[3], num_classes),
    ]
    return nn.Sequential(*layers)


def vit(cfg: ModelConfig, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """timm's VisionTransformer sized for small images (patch 4 on 32x32 gives 64 tokens)."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=image_size,
        patch_size=cfg.patch_size,
        in_chans=in_channels,
        num_classes=num_classes,
        embed_dim=cfg.width,
        depth=cfg.depth,
        num_heads=cfg.heads,
        drop_rate=cfg.dropout,
        **cfg.kwargs,
    )


def timm_model(cfg: ModelConfig, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """Any timm model by ``model.name``; pretrained weights only if they are available locally.

    The data set's image size is passed as ``img_size`` to models whose constructor takes it (ViT, DeiT,
    Swin, ...: their position embeddings depend on it); models that do not (ResNets, FastViT, ...) are built
    without it. ``model.kwargs.img_size`` overrides the size and is always passed.
    """
    import timm

    if not cfg.name or not timm.is_model(cfg.name):
        raise ConfigError("model.name", f"{cfg.name!r} is not a timm model name (see timm.list_models())")
    kwargs = dict(cfg.kwargs)

    def create(**extra: object) -> nn.Module:
        args = {"pretrained": cfg.pretrained, "num_classes": num_classes, "in_chans": in_channels}
        return timm.create_model(cfg.name, **args, **kwargs, **extra)

    if "img_size" in kwargs:
        return create()
    try:
        return create(img_size=image_size)
    except TypeError as e:  # the constructor has no img_size: it fails binding its arguments, before any work
        if not _rejects_keyword(e, "img_size"):
            raise
    return create()


def _rejects_keyword(error: TypeError, keyword: str) -> bool:
    """Whether ``error`` is Python's "got an unexpected keyword argument '<keyword>'" (any callee)."""
    return f"unexpected keyword argument '{keyword}'" in str(error)


ARCHS: dict[str, Callable[[ModelConfig, int, int, int], nn.Module]] = {
    "small_cnn": small_cnn,
    "mlp": mlp,
    "resnet": cifar_resnet,
    "wide_resnet": wide_resnet,
    "vit": vit,
    "timm": timm_model,
    "cnn1d": cnn1d,
}


class MIMO(nn.Module):
    """Multi-input multi-output (Havasi et al. 2021): one network, M inputs and M heads, an ensemble of M
    subnetworks in one forward pass.

    ``base`` is the configured model built for ``M x in_channels`` input channels and ``M x num_classes``
    outputs. Given a batch with ``in_channels`` channels (evaluation, BN recalibration, a member's logits),
    the input is replicated M times and the output is the log of the heads' mean probabilities, so softmax
    of it (what every evaluation and the ensemble combiner take) is the MIMO prediction, and cross-entropy on
    it is its NLL. Given ``M x in_channels`` channels (training, from ``training_batch``), the output is
    every head's logits, ``(B x M, num_classes)`` in (sample, head) order.
    """

    def __init__(self, base: nn.Module, heads: int, in_channels: int, num_classes: int, repetitions: int):
        super().__init__()
        self.base, self.heads, self.in_channels = base, heads, in_channels
        self.num_classes, self.repetitions = num_classes, repetitions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == self.in_channels:  # one input for every head: the ensemble's prediction
            heads = self.base(torch.cat([x] * self.heads, dim=1)).view(len(x), self.heads, self.num_classes)
            log_p = torch.log_softmax(heads.float(), dim=-1)
            return torch.logsumexp(log_p, dim=1) - math.log(self.heads)
        if x.shape[1] != self.in_channels * self.heads:
            raise ValueError(f"MIMO takes {self.in_channels} or {self.in_channels * self.heads} channels")
        return self.base(x).reshape(len(x) * self.heads, self.num_classes)

    def training_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """M independent examples per input: the batch repeated ``repetitions`` times, then shuffled by one
        permutation per head (drawn on the CPU from torch's global generator, which a checkpoint keeps), the
        heads' images concatenated on channels; the targets as ``forward`` orders the logits (sample, head).
        The input-repetition ratio of the paper is 0 here: every head sees its own shuffle."""
        x, y = x.repeat(self.repetitions, *([1] * (x.dim() - 1))), y.repeat(self.repetitions)
        perms = [torch.randperm(len(x)).to(x.device) for _ in range(self.heads)]
        inputs = torch.cat([x[p] for p in perms], dim=1)
        return inputs, torch.stack([y[p] for p in perms], dim=1).reshape(-1)


def build_custom(
    cfg: DictConfig | dict[str, Any], input_shape: tuple[int, ...], num_classes: int
) -> nn.Module:
    """``model=custom``: ``model._target_`` called with the user's keys and, under each name it takes of
    ``MODEL_DATA_KEYWORDS``, the data set's shape: ``in_channels`` (C), ``num_classes`` (K), ``image_size``
    (the last dim: an image's width, a signal's length) and ``input_shape`` (one sample's shape, (C, H, W)
    or (C, L)). What it returns must be an ``nn.Module`` mapping a batch to (batch, K) logits: checked here
    on a batch of two zero samples, in eval mode, without gradients and with the RNG state restored, so the
    check changes nothing the run computes."""
    node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    fn, path = check_custom_model(node), node["_target_"]
    given = {
        "in_channels": input_shape[0],
        "num_classes": num_classes,
        "image_size": input_shape[-1],
        "input_shape": tuple(input_shape),
    }
    try:
        model = fn(**user_arguments(node, "model"), **{k: given[k] for k in model_data_keywords(fn)})
    except Exception as err:
        raise ConfigError(
            "model._target_", f"{path} raised while building the model: {one_line(err)}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            "model._target_", f"{path} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    check_output(model, path, input_shape, num_classes)
    return model


def check_output(model: nn.Module, path: str, input_shape: tuple[int, ...], num_classes: int) -> None:
    """``model`` maps a (2, *input_shape) batch to (2, num_classes) logits; else one line naming it."""
    was_training = model.training
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model.eval()
            out = model(torch.zeros(2, *input_shape))
    except Exception as err:
        raise ConfigError(
            "model._target_", f"{path} fails on a batch of shape {(2, *input_shape)}: {one_line(err)}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            "model._target_",
            f"{path} returns {got} for a batch of shape {(2, *input_shape)}, expected (2, {num_classes}) "
            "logits (take num_classes as a keyword argument, or set it with +model.num_classes=...)",
        )


def build_model(
    cfg: ModelConfig, in_channels: int, image_size: int, num_classes: int, input_shape: tuple[int, ...] = ()
) -> nn.Module:
    """The model of ``cfg`` for the data set's shape (``input_shape``: one sample's, for ``model=custom``);
    with ``model.mimo_heads`` M > 1, wrapped as ``MIMO``."""
    if cfg.arch == "custom":
        return build_custom(cfg, input_shape or (in_channels, image_size, image_size), num_classes)
    if cfg.arch not in ARCHS:
        raise ConfigError("model.arch", f"unknown model {cfg.arch!r}; choose one of {sorted(ARCHS)}")
    m = cfg.mimo_heads
    if m == 1:
        return ARCHS[cfg.arch](cfg, in_channels, image_size, num_classes)
    base = ARCHS[cfg.arch](cfg, in_channels * m, image_size, num_classes * m)
    return MIMO(base, m, in_channels, num_classes, cfg.mimo_batch_repetitions)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

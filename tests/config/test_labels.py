"""How runs are named in summaries, W&B tags and tables (``config.targets.option_label``)."""

from __future__ import annotations

from helpers import compose_config

from ssa_experiments.config.targets import option_label


def test_a_timm_model_is_named_by_its_timm_name() -> None:
    cfg = compose_config(["model=timm", "model.name=resnet50"])
    assert option_label(cfg.model, "arch") == "timm:resnet50"  # not `timm`, which names a thousand models


def test_builtin_options_keep_their_names() -> None:
    cfg = compose_config(["model=mlp", "data=digits", "method=iterative"])
    labels = option_label(cfg.model, "arch"), option_label(cfg.data, "name"), option_label(cfg.method, "name")
    assert labels == ("mlp", "digits", "iterative")

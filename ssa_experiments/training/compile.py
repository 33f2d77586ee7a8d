"""``train.compile``: the model compiled with ``torch.compile`` for the parent and the fine-tuning.

Why ``nn.Module.compile()`` (in place) and not ``model = torch.compile(model)``: the wrapper that
``torch.compile`` returns prefixes every state_dict key with ``_orig_mod.``, so checkpoints, parents, saved
models and ``export_state_dict`` would change; ``Module.compile`` compiles the module's own call and leaves
the module, its parameters, its buffers and their names as they are. The masks (``pruning/masking.py``)
stay a ``parametrize`` parametrization: Dynamo traces it, and since the masks are buffers written in place
(``set_mask``, ``share_masks``: the same tensors every step), resampling them every step changes no guard
and compiles nothing again; attaching them to the trained parent, and switching between train and eval,
compile once each (``tests/training/test_compile.py`` counts the compilations).

Not bit-identical to eager: Inductor fuses and reorders float arithmetic (BatchNorm's statistics, the
softmax of the loss), so the numbers differ in the last bits, and ``train.compile=true`` is part of the
compute identity (``config/identity.py``).
"""

from __future__ import annotations

from torch import nn


def compiled(model: nn.Module, enabled: bool) -> nn.Module:
    """``model``, compiled in place when ``enabled`` (it compiles lazily, at its first forward pass)."""
    if enabled:
        model.compile()
    return model

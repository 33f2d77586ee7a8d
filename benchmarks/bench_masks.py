"""Mask overhead: median training-step time under dense, a fixed mask, and stochastic (annealing) masks.

Why: SSA samples a fresh Bernoulli mask for every prunable weight before every step, and every masked model
multiplies each weight by its mask in the forward pass (``torch.nn.utils.parametrize``) and the gradient by it
in the backward pass. This measures what that costs against the same model without masks.

What is timed, per step and per method: ``method.before_step`` (where stochastic masks are sampled, called
exactly as ``loop.train_epoch`` calls it), ``set_lr``, forward under the run's autocast/channels-last
settings, loss, ``zero_grad``, backward and an SGD step (the configured optimizer: Nesterov momentum 0.9,
weight decay 5e-4). The four variants:

    dense                   no masks (the reference)
    one_shot                fixed target mask (sparsity 0.9): forward/backward multiply, no sampling
    temperature_annealing   masks sampled every step, anneal_epochs huge so annealing never finalises
    random_annealing        same, with per-weight initial probabilities

Same initial weights (one ``build_model`` state copied into four models), same data batch, batch size, seed
and method settings from ``conf/`` (the real Hydra defaults). Steps run round-robin A/B/C/D/A/B/C/D... so a
slow phase of the machine hits every method alike; the first ``--warmup`` rounds are discarded. Reported:
the median step time per method, its ratio to dense (the goal) with a bootstrap 95% interval, and the median
of the per-round paired ratios (each method's step against the dense step of the same round).

A second, low-noise estimate. On a shared 2-core VM a 2 s ResNet-18 step varies by +-5-10% from step to step,
so 20-odd rounds cannot resolve a 2-3% difference (the interval says so). But the mask costs do not depend on
the batch size: sampling is one uniform draw and one comparison per weight, and the masks add one multiply per
weight to the forward and one to the backward pass. So the same four models are also stepped round-robin at a
small batch (``--small-batch``, default 8), where the per-step noise is a few ms, and the additive overhead
``delta = median(step_method - step_dense)`` (paired by round) is measured there; the estimate at the main
batch is ``1 + delta / median(dense step at the main batch)``.

Goals (CIFAR ResNet-18, batch 128): stochastic/dense <= 1.03, fixed/dense <= 1.02. They are meant for the
GPU; a ratio measured on CPU does not prove them there (different kernels, a different RNG: CPU torch draws
uniforms serially from MT19937, CUDA from Philox in parallel; launch-bound costs instead of compute-bound).

    .venv/bin/python benchmarks/bench_masks.py            # ResNet-18, batch 128: ~3-4 min on 2 CPU cores
    .venv/bin/python benchmarks/bench_masks.py --rounds 5 --small-rounds 15 --warmup 1  # ~1.5 min
    .venv/bin/python benchmarks/bench_masks.py --model small_cnn --rounds 200
    .venv/bin/python benchmarks/bench_masks.py --model wide_resnet --device cuda --json m.json  # WRN-28-10
    .venv/bin/python benchmarks/bench_masks.py --quick    # a smoke check in seconds: a tiny CNN

On CUDA each method also reports images/s (batch / median step) and its peak GPU memory (the most allocated
during its own steps; all four models stay resident, so the peaks share their weights).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from machine import machine  # benchmarks/machine.py (scripts run from benchmarks/)
from omegaconf import DictConfig

from ssa_experiments.config.paths import conf_dir
from ssa_experiments.config.schema import register_configs
from ssa_experiments.models import build_model
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.runtime.devices import pick_device
from ssa_experiments.runtime.precision import Precision
from ssa_experiments.training.optim import make_optimizer, set_lr

CONF_DIR = str(conf_dir())  # the configs the package reads (ssa_experiments/config/paths.py)
METHODS = ("dense", "one_shot", "temperature_annealing", "random_annealing")
GOALS = {"one_shot": 1.02, "temperature_annealing": 1.03, "random_annealing": 1.03}
STEPS_PER_EPOCH = 390  # CIFAR-10 at batch 128; only used for the (never reached) annealing progress


def compose_cfg(
    method: str, model: str, batch_size: int, image_size: int, device: str, extra: tuple[str, ...] = ()
) -> DictConfig:
    """The real config (conf/), as a user's overrides would make it; annealing never finalises."""
    overrides = [
        f"method={method}",
        f"model={model}",
        *extra,
        "data=synthetic",
        f"data.image_size={image_size}",
        "data.channels=3",
        "data.num_classes=10",
        f"train.batch_size={batch_size}",
        f"device={device}",
    ]
    if method in ("temperature_annealing", "random_annealing", "iterative"):
        overrides.append("method.anneal_epochs=1000000")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


class Runner:
    """One model + optimizer + pruning method, stepped exactly as ``loop.train_epoch`` steps them."""

    def __init__(self, cfg: DictConfig, state: dict, device: torch.device, precision: Precision) -> None:
        self.name = cfg.method.name
        self.model = build_model(cfg.model, 3, cfg.data.image_size, cfg.data.num_classes)
        self.model.load_state_dict(state)
        self.model = self.model.to(device)
        if precision.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.method = make_method(cfg.method, cfg.pruning, cfg.sparsity, cfg.seed)
        self.method.start(self.model)
        self.optimizer = make_optimizer(
            self.model.parameters(), cfg.optimizer, cfg.lr.lr, self.method.self_decayed_params()
        )
        self.method.bind_optimizer(self.optimizer)
        self.loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
        self.precision, self.device = precision, device
        self.step_index = 0
        self.model.train()
        self.method.begin_epoch(0, STEPS_PER_EPOCH)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """One timed training step: (total seconds, seconds in before_step)."""
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        epoch, step = divmod(self.step_index, STEPS_PER_EPOCH)
        self.method.before_step(epoch, step, STEPS_PER_EPOCH)
        if self.device.type == "cuda":
            sync()
        t1 = time.perf_counter()
        set_lr(self.optimizer, 0.01)
        with self.precision.autocast():
            logits = self.model(self.precision.inputs(x))
            loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.method.before_optimizer_step(0.01)
        self.optimizer.step()
        sync()
        t2 = time.perf_counter()
        self.step_index += 1
        return t2 - t0, t1 - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("resnet18", "wide_resnet", "small_cnn"), default="resnet18")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--rounds", type=int, default=0, help="timed rounds; 0: 20 on CPU, 50 on CUDA")
    p.add_argument(
        "--steps-per-turn", type=int, default=0, help="steps per method per round; 0: 1 on CPU, 20 on CUDA"
    )
    p.add_argument("--warmup", type=int, default=2, help="rounds discarded at the start")
    p.add_argument("--small-batch", type=int, default=8, help="batch of the low-noise phase; 0: skip it")
    p.add_argument(
        "--small-rounds", type=int, default=0, help="rounds of that phase; 0: 40 (CPU), 100 (CUDA)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke check in seconds: small_cnn (width 8), batch 16, 16x16 images, 2 + 2 rounds; ratios "
        "printed, not meaningful",
    )
    p.add_argument("--json", type=Path, help="also write the results here (scripts/gpu_check.py reads them)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.quick:
        args.model, args.batch_size, args.image_size = "small_cnn", 16, 16
        args.rounds, args.small_rounds, args.small_batch, args.warmup = 2, 2, 4, 1

    device = pick_device(args.device)
    cuda = device.type == "cuda"
    rounds = args.rounds or (50 if cuda else 20)
    small_rounds = args.small_rounds or (100 if cuda else 40)
    warmup = args.warmup
    per_turn = args.steps_per_turn or (1 if args.quick or not cuda else 20)

    register_configs()
    extra = ("model.width=8",) if args.quick else ()
    cfgs = {
        m: compose_cfg(m, args.model, args.batch_size, args.image_size, str(device), extra) for m in METHODS
    }
    base = cfgs["dense"]
    precision = Precision.for_device(device, base.train.amp, base.train.channels_last)
    torch.manual_seed(args.seed)
    init = build_model(base.model, 3, args.image_size, base.data.num_classes).state_dict()
    runners = [Runner(cfgs[m], init, device, precision) for m in METHODS]
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g).to(device)
    y = torch.randint(0, base.data.num_classes, (args.batch_size,), generator=g).to(device)

    print(machine(device))
    n_prunable = runners[1].method.report()["prunable_params"]
    print(
        f"model={args.model} ({sum(p.numel() for p in runners[0].model.parameters()):,} params, "
        f"{n_prunable:,} prunable) device={device} batch={args.batch_size} image={args.image_size} "
        f"sparsity={base.sparsity} amp={precision.amp} channels_last={precision.channels_last} "
        f"rounds={rounds} (+{warmup} warm-up) steps/turn={per_turn} order={'/'.join(METHODS)}"
    )
    print_memory(runners, n_prunable)
    started = time.perf_counter()
    times, sample_times, per_round, peaks = interleave(runners, x, y, rounds, warmup, per_turn, verbose=True)
    dense = statistics.median(times["dense"])
    ratios = {m: statistics.median(times[m]) / dense for m in METHODS}
    paired = {m: statistics.median(rd[m] / rd["dense"] for rd in per_round) for m in METHODS}
    ci = {m: bootstrap_ci(per_round, m) for m in METHODS}
    print(f"\nwall {time.perf_counter() - started:.0f} s, {len(times['dense'])} timed steps per method")
    header = (
        f"{'method':<24}{'median ms':>11}{'p25 ms':>9}{'p75 ms':>9}{'before_step ms':>16}"
        f"{'ratio':>8}{'95% CI':>15}{'paired':>8}{'goal':>8}  verdict"
    )
    print(header)
    print("-" * len(header))
    verdicts = {}
    for m in METHODS:
        q = statistics.quantiles(times[m], n=4) if len(times[m]) > 1 else [times[m][0]] * 3
        goal = GOALS.get(m)
        verdicts[m] = "" if goal is None else verdict(ratios[m], ci[m], goal)
        print(
            f"{m:<24}{1e3 * statistics.median(times[m]):>11.1f}{1e3 * q[0]:>9.1f}{1e3 * q[2]:>9.1f}"
            f"{1e3 * statistics.median(sample_times[m]):>16.2f}{ratios[m]:>8.3f}"
            f"{f'[{ci[m][0]:.3f}, {ci[m][1]:.3f}]':>15}{paired[m]:>8.3f}"
            f"{'' if goal is None else f'<={goal}':>8}  {verdicts[m]}"
        )
    images_per_s = {m: args.batch_size / statistics.median(times[m]) for m in METHODS}
    if cuda:
        print(
            "images/s, peak GPU memory: "
            + "; ".join(f"{m} {images_per_s[m]:,.0f}, {peaks[m] / 2**20:,.0f} MiB" for m in METHODS)
        )
    sampling = statistics.median(sample_times["temperature_annealing"] + sample_times["random_annealing"])
    print(
        f"sampling (before_step, timed on its own): {1e3 * sampling:.1f} ms = "
        f"{100 * sampling / dense:.2f}% of the dense step. CI: bootstrap over rounds, paired."
    )
    stochastic = max(("temperature_annealing", "random_annealing"), key=lambda m: ratios[m])
    print(
        f"RATIO stochastic/dense: {ratios[stochastic]:.3f} "
        f"(temperature {ratios['temperature_annealing']:.3f}, random {ratios['random_annealing']:.3f}; "
        f"goal <= 1.03: {verdicts[stochastic]})  fixed/dense: {ratios['one_shot']:.3f} "
        f"(goal <= 1.02: {verdicts['one_shot']})  [{device.type}, {args.model}, batch {args.batch_size}]"
    )
    results = {
        "model": args.model,
        "device": str(device),
        "batch_size": args.batch_size,
        "amp": precision.amp,
        "channels_last": precision.channels_last,
        "median_step_s": {m: statistics.median(times[m]) for m in METHODS},
        "ratio_to_dense": ratios,
        "ratio_ci95": ci,
        "goals": GOALS,
        "images_per_s": images_per_s,
        "peak_memory_bytes": peaks if cuda else None,
    }
    if args.small_batch:
        results["estimate_low_noise"] = low_noise(runners, x, y, args, small_rounds, warmup, per_turn, dense)
    print(f"wall {time.perf_counter() - started:.0f} s; load avg (1 min) at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def low_noise(runners: list[Runner], x, y, args, small_rounds: int, warmup: int, per_turn: int, dense: float):
    """The additive mask cost at a small batch, scaled to the main batch's dense step (module docstring)."""

    xs, ys = x[: args.small_batch], y[: args.small_batch]
    print(
        f"\nlow-noise phase: batch {args.small_batch}, {small_rounds} rounds (+{max(warmup, 2)} warm-up), "
        "same models"
    )
    s_times, _, s_rounds, _ = interleave(
        runners, xs, ys, small_rounds, max(warmup, 2), per_turn, verbose=False
    )
    header = f"{'method':<24}{'median ms':>11}{'delta ms':>10}{'95% CI ms':>18}{'est. ratio':>12}{'goal':>8}"
    print(header)
    print("-" * len(header))
    est = {}
    for m in METHODS:
        diffs = [rd[m] - rd["dense"] for rd in s_rounds]
        delta, lo, hi = statistics.median(diffs), *bootstrap_median(diffs)
        est[m] = 1 + delta / dense
        print(
            f"{m:<24}{1e3 * statistics.median(s_times[m]):>11.1f}{1e3 * delta:>10.1f}"
            f"{f'[{1e3 * lo:.1f}, {1e3 * hi:.1f}]':>18}{est[m]:>12.3f}"
            f"{'' if m not in GOALS else f'<={GOALS[m]}':>8}"
        )
    print(
        f"(est. ratio = 1 + delta / {1e3 * dense:.1f} ms, the median dense step at batch {args.batch_size})"
    )
    stochastic = max(("temperature_annealing", "random_annealing"), key=lambda m: est[m])
    print(
        f"ESTIMATE (additive, low-noise) stochastic/dense: {est[stochastic]:.3f} (goal <= 1.03: "
        f"{'met' if est[stochastic] <= 1.03 else 'MISSED'})  fixed/dense: {est['one_shot']:.3f} "
        f"(goal <= 1.02: {'met' if est['one_shot'] <= 1.02 else 'MISSED'})  [{x.device.type}, {args.model}, "
        f"batch {args.batch_size}]"
    )
    return est


# The core's first layout (before issue 11), per prunable weight, for the stochastic methods: train and eval
# masks in fp32 (8), an fp32 copy of the target (4), p0 (4), P (4), U (4), a bool target (1); checkpoints
# stored both masks in fp32 (8).
BYTES_BEFORE = {"one_shot": 8, "temperature_annealing": 25, "random_annealing": 25}
CHECKPOINT_BYTES_BEFORE = 8


def print_memory(runners: list[Runner], n_prunable: int) -> None:
    """Bytes per prunable weight that masks and annealing state hold beyond the model, counted from the live
    tensors (each storage once: the flat buffers and the masks' views of them share storage)."""
    for runner in runners[1:]:
        method = runner.method
        tensors = [t for m in method.masks.values() for t in (m.train_mask, m.eval_mask)]
        for g in getattr(method, "groups", []):
            tensors += [t for t in (g.keep, g.p0, g.prob, g.u, g.mask) if isinstance(t, torch.Tensor)]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        in_memory = sum(storages.values()) / n_prunable
        ckpt = (
            sum(
                (m.train_mask.bool().element_size() + m.eval_mask.element_size()) * m.eval_mask.numel()
                for m in method.masks.values()
            )
            / n_prunable
        )
        print(
            f"memory {runner.name:<22} {in_memory:5.1f} bytes/prunable weight (before: "
            f"{BYTES_BEFORE[runner.name]}); masks in a checkpoint {ckpt:.0f} "
            f"(before: {CHECKPOINT_BYTES_BEFORE})"
        )


def interleave(runners: list[Runner], x, y, rounds: int, warmup: int, per_turn: int, verbose: bool):
    """Round-robin steps; returns (step times, before_step times, per-round medians, peak CUDA memory per
    method), warm-up discarded."""
    cuda = x.device.type == "cuda"
    peaks = dict.fromkeys((r.name for r in runners), 0)
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    sample_times: dict[str, list[float]] = {r.name: [] for r in runners}
    per_round: list[dict[str, float]] = []
    for r in range(warmup + rounds):
        this_round = {}
        for runner in runners:
            if cuda:
                torch.cuda.reset_peak_memory_stats(x.device)
            steps = [runner.step(x, y) for _ in range(per_turn)]
            if cuda:
                peaks[runner.name] = max(peaks[runner.name], torch.cuda.max_memory_allocated(x.device))
            this_round[runner.name] = statistics.median(s[0] for s in steps)
            if r >= warmup:
                times[runner.name] += [s[0] for s in steps]
                sample_times[runner.name] += [s[1] for s in steps]
        if r >= warmup:
            per_round.append(this_round)
        if verbose:
            label = "warm-up" if r < warmup else f"round {r - warmup + 1}/{rounds}"
            print(
                f"  {label:<14}" + "  ".join(f"{m} {1e3 * t:8.1f} ms" for m, t in this_round.items()),
                flush=True,
            )
    return times, sample_times, per_round, peaks


def bootstrap_median(values: list[float], n: int = 2000) -> tuple[float, float]:
    rng = random.Random(0)
    stats = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(n))
    return stats[int(0.025 * n)], stats[int(0.975 * n) - 1]


def bootstrap_ci(per_round: list[dict[str, float]], method: str, n: int = 2000) -> tuple[float, float]:
    """95% interval of median(method) / median(dense), resampling whole rounds (keeps the pairing)."""
    rng = random.Random(0)
    stats = []
    for _ in range(n):
        sample = [per_round[rng.randrange(len(per_round))] for _ in per_round]
        stats.append(
            statistics.median(r[method] for r in sample) / statistics.median(r["dense"] for r in sample)
        )
    stats.sort()
    return stats[int(0.025 * n)], stats[int(0.975 * n) - 1]


def verdict(ratio: float, ci: tuple[float, float], goal: float) -> str:
    if ci[1] <= goal:
        return "met"
    if ci[0] > goal:
        return "MISSED"
    return f"{'met' if ratio <= goal else 'missed'} (within noise)"


if __name__ == "__main__":
    main()

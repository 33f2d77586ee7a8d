"""The paper's figures and tables, drawn from result trees or from committed CSVs.

    python -m ssa_experiments.cli.figures NAME --runs CSV_OR_DIRS... --out DIR
        [--select-on val|test] [--sparsity S] [--where key=value ...]

NAME is one of
  fig1     Figure 1, temperature annealing ablation: test accuracy over τ0, one line per n, one panel per
           sparsity, one-shot as a band; last panel: the best configuration per sparsity vs one-shot
  fig2     Figure 2: random vs temperature annealing (row 1) and temperature annealing vs iterative pruning,
           linear and cubic (row 2) over n, one panel per sparsity; last panel: each method's best per
           sparsity
  curves   test (left) and validation (right) accuracy per epoch of every setting at one sparsity, the
           dense parent at epoch 0
           (--sparsity, default the highest), dotted at the end of annealing (epoch n); needs metrics.jsonl in
           the run directories, or the epochs CSV next to a runs CSV (aggregate's --csv writes both)
  table1   Table 1 (tables.py): pruning criterion × method by sparsity, plus the dense row
  table    aggregate's settings × sparsity, as Markdown, LaTeX and CSV
  schedules  the expected density over fine-tuning of every annealing and iterative schedule (no --runs;
           --sparsity, --n, --tau0, --epochs)
  baselines  method × retraining (one-cycle, fine-tune, LR rewind, weight rewind), one table per sparsity
           (baselines_sS), as Markdown, LaTeX and CSV
  paired   every setting's mean per-seed difference to --paired REF with its bootstrap CI and wins/n, one
           panel per sparsity (a forest plot; --pair-on KEYS as aggregate's); also paired.csv
  tuned    the tuned configurations' test accuracy (hparams_search=): per method, sparsity and seed the
           trial with the best val_acc, then its test accuracy (tuned.md/.tex/.csv, tuned_choices.csv)
  table2   Table 2, ensembles (ensembles/report.py): accuracy, NLL, ECE, corrupted data, diversity and
           training FLOPs per method, mean ± std over seeds; --runs: the combiner's ensemble.json
           (``ssa-ensemble ... --size``) or an ensembles.csv; also writes ensembles.csv
           and ensemble_curve.csv, from which it can be redrawn
  ensemble_size  ensemble accuracy, NLL and ECE vs the number of members k, one line per method, mean ±
           std over seeds; --runs as for table2
Each figure is written as NAME.png and NAME.pdf under --out (curves: curves_sS), and the paths are printed.

Only completed runs count, each (setting, sparsity, seed) once. The plotted number is the final-epoch test
accuracy (every method has the same epoch budget), mean ± std over seeds; legends give the seed counts in
words ("3 seeds"), as n is the annealing epochs. Where a figure shows "the best configuration" it is chosen
per method and sparsity by mean final-epoch validation accuracy; ``--select-on test`` chooses on test accuracy
instead, as the paper did: optimistic, and the figure's title says so. ``--errorbars ci`` draws, instead of ±
std, the percentile bootstrap interval (``--level``, default 95%, seeded by ``--bootstrap-seed``) of each mean
over its seeds: how well the mean is known, not how much the seeds spread (no bar for one seed).

``--paired REF`` (table1, table, baselines) also writes NAME_paired.md/.tex/.csv next to each table: every
cell against REF (a method or a setting label) seed by seed, "mean difference [bootstrap CI] wins/n", pairs
having the same seed, sparsity and config but for the method's keys (analysis/paired.py says why and how).
``paired`` draws the same numbers as a figure; its REF may also be a method with key=value words
("one_shot pruning.criterion=magnitude") and ``--pair-on KEYS`` names what a pair shares besides seed and
sparsity (aggregate's options of the same names).

``--where key=value`` keeps the runs whose flattened config has that value (numbers compared as numbers). A
filter on a ``method.*`` key applies only to the methods that read that key (aggregate's METHOD_KEYS): with
``--where method.anneal_epochs=5`` the dense and one-shot runs stay. Any other key (``method.name`` included)
applies to every run, and a run without the key is dropped.
"""

# One module per figure (fig1, fig2, curves, schedules, ensemble), and what they share: which runs and
# which configuration (select), colours, labels and files (style), error bars and the best-configuration
# panel (panels). cli/figures.py's COMMANDS table says which NAME each one draws. This docstring is the
# command's --help.

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, the same output on every machine

"""``python -m ssa_experiments.figures``: the command; the code is in ``analysis/figures.py``."""

from ssa_experiments.analysis.figures import main

if __name__ == "__main__":
    main()

"""``python -m ssa_experiments.aggregate``: the command; the code is in ``analysis/aggregate.py``."""

from ssa_experiments.analysis.aggregate import main

if __name__ == "__main__":
    main()

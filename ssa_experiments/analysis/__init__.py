"""Analysis: ``aggregate`` reads finished runs back into one frame; ``figures/`` draws the paper's figures
from that frame (one module per figure) and ``tables`` writes its tables. Nothing here trains or changes a
run."""

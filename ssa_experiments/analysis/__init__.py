"""Analysis: ``aggregate`` reads finished runs back into one frame; ``figures`` draws the paper's figures and
``tables`` writes its tables from that frame. Nothing here trains or changes a run."""

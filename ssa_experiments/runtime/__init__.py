"""Where a run meets the machine: ``devices`` chooses the device (``device=auto``, one GPU per job when jobs
share a machine) and ``precision`` decides how tensors meet it (bf16 autocast, channels-last: on CUDA only).
Below training and ensembles, which both evaluate networks on the device a run chose; imports nothing of
the package above config and repro."""

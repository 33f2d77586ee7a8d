"""Data: ``datasets`` reads a data set into memory (digits, synthetic; ``disk`` reads CIFAR-10/100 and Tiny
ImageNet from their on-disk formats) and carves the validation split; ``loaders`` batches it for a run."""

"""The data a detector reads: COCO-format splits, the synthetic set, and the loaders."""

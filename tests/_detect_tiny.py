"""The tiny detector every detection test trains: 64-px images, a few-thousand-parameter
backbone, few proposals. One list, so the engine, CLI and DDP tests train the same model."""

TINY_MODEL = [
    "+detect.model.tiny_widths=[8,16,32,64]",
    "detect.model.fpn_channels=16",
    "detect.model.representation_size=32",
    "detect.model.min_size=64",
    "detect.model.max_size=64",
    "detect.model.rpn_post_nms_top_n_train=50",
    "detect.model.rpn_post_nms_top_n_test=50",
    "detect.model.box_batch_size_per_image=32",
]

"""The tiny detector every detection test trains: 64-px images, a few-thousand-parameter
backbone, few proposals. One list, so the training, CLI and DDP tests train the same model."""

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
# A CLI training run of that model on an 8-image, 64-px synthetic set, one process, no
# periodic checkpoints: the tests add their schedule (and optimiser) to it.
TINY_RUN = [
    "data.synth.images=8",
    "data.synth.val_images=4",
    "data.synth.size=64",
    *TINY_MODEL,
    "detect.batch_size=2",
    "detect.workers=0",
    "detect.threads=1",
    "detect.ckpt_every=0",
]


def losses_and_grads(model, batch, seed: int) -> tuple[dict, dict]:
    """One training forward and backward on ``batch`` = (images, targets): the loss dict and
    every parameter's gradient, detached, with the samplers' global generator at ``seed``."""
    import torch

    images, targets = batch
    model.train()
    model.zero_grad()
    torch.manual_seed(seed)  # the RPN/ROI samplers draw from the global generator
    losses = model(images, targets)
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads

"""Vision-encoder families: hf, timm, open_clip (real checkpoints) and tiny (random init)."""

from harness.hookspecs import hookimpl

TINY_ENCODERS = ("vit-p4", "vit-p8", "clip-p8", "siglip-p8", "dinov2-p14", "convnext", "resnet")


@hookimpl
def register_vision_encoders(register):
    register("hf", "harness.vision:load_hf", doc="transformers vision tower (CLIP, SigLIP, DINOv2...) by hub id or local path; penultimate layer, CLS dropped")
    register("timm", "harness.vision:load_timm", doc="timm model name or local checkpoint dir; forward_features, prefix tokens dropped")
    register("open_clip", "harness.vision:load_open_clip", doc="open_clip arch[/pretrained tag or path]; visual tokens")
    register("tiny", "harness.vision:load_tiny", names=TINY_ENCODERS, doc="random-init small encoders built from configs")

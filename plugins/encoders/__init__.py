"""Vision-encoder families: hf, timm, open_clip (real checkpoints), tiny (random init) and mini
(the miniature pretrained zoo, :mod:`harness.plugins.zoo.recipes`)."""

from harness.hookspecs import hookimpl

TINY_ENCODERS = ("vit-p4", "vit-p8", "clip-p8", "siglip-p8", "dinov2-p14", "convnext", "resnet")
# harness.plugins.zoo.recipes.MINI_ENCODERS, spelled out so registering imports no torch (a test keeps them equal)
MINI_ENCODERS = ("clip-vit-s", "clip-vit-m", "simclr-vit", "simclr-resnet", "sup-vit", "sup-resnet",
                 "mae-vit", "digits-resnet", "digits-resnet-m", "random-vit")


@hookimpl
def register_vision_encoders(register):
    register("hf", "harness.plugins.encoders.families:load_hf", doc="transformers vision tower (CLIP, SigLIP, DINOv2...) by hub id or local path; penultimate layer, CLS dropped")
    register("timm", "harness.plugins.encoders.families:load_timm", doc="timm model name or local checkpoint dir; forward_features, prefix tokens dropped")
    register("open_clip", "harness.plugins.encoders.families:load_open_clip", doc="open_clip arch[/pretrained tag or path]; visual tokens")
    register("tiny", "harness.plugins.encoders.families:load_tiny", names=TINY_ENCODERS, doc="random-init small encoders built from configs")
    register("mini", "harness.plugins.zoo.recipes:load_mini_encoder", names=MINI_ENCODERS, doc="miniature encoders pretrained on the shapes world with different objectives (CLIP, SimCLR, supervised, MAE, digits, random control); 16 tokens")

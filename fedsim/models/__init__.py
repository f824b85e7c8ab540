"""Model zoo: every model ends in an ``nn.Linear`` classifier (the layer label attacks read)."""

from fedsim.models.zoo import MODELS, ACTIVATIONS, build_model, classifier_layer

__all__ = ["MODELS", "ACTIVATIONS", "build_model", "classifier_layer", "model_options"]


def model_options(m) -> dict:
    """``build_model`` keyword options of a ``[model]`` section (``cfg.model``)."""
    return {
        "fcn3": {"hidden": (m.width,), "activation": m.activation},
        "lenet5": {"activation": m.activation, "width": m.width},
        "convnet": {"width": m.width, "batchnorm": m.batchnorm, "activation": m.activation},
        "resnet18": {},
        "vgg16": {},
    }[m.name]

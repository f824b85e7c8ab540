"""Model zoo (every model ends in an ``nn.Linear`` classifier, the layer label attacks read) and the user's
own models: ``model.name = "package.module:factory"`` with ``factory(input_shape=(C, H, W), num_classes=K,
**model.options) -> nn.Module`` (``fedsim.core.experiment.make_model`` builds every copy of the model this way)."""

from fedsim.core.models.zoo import MODELS, ACTIVATIONS, build_model, classifier_layer, model_factory
from fedsim.core.objref import options_of

__all__ = ["MODELS", "ACTIVATIONS", "build_model", "classifier_layer", "model_factory", "model_options"]


def model_options(m) -> dict:
    """``build_model`` keyword options of a ``[model]`` section (``cfg.model``): a zoo model's from its keys,
    overridden by ``[model.options]``; a factory gets ``[model.options]`` only."""
    extra = options_of("model.options", getattr(m, "options", ""))
    zoo = {
        "fcn3": {"hidden": (m.width,), "activation": m.activation},
        "lenet5": {"activation": m.activation, "width": m.width},
        "convnet": {"width": m.width, "batchnorm": m.batchnorm, "activation": m.activation},
        "resnet18": {},
        "vgg16": {},
    }.get(m.name, {})
    return {**zoo, **extra}

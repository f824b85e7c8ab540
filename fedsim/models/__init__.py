"""Model zoo: every model ends in an ``nn.Linear`` classifier (the layer label attacks read)."""

from fedsim.models.zoo import MODELS, ACTIVATIONS, build_model, classifier_layer

__all__ = ["MODELS", "ACTIVATIONS", "build_model", "classifier_layer"]

"""An example user package: a model factory and a dataset loader that fedsim imports by name."""

"""oneshot: Lightning-native differentiable one-shot neural architecture search."""

__version__ = "0.1.0"

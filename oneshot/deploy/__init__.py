"""Deployable models: a retrain run's network with its trained weights, exported to TorchScript
or ONNX, checked against PyTorch, and timed on this device (``oneshot.export``,
``oneshot.latency``)."""

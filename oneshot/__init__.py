"""oneshot: Lightning-native differentiable one-shot neural architecture search.

Entry points (``python -m oneshot.<name>``): ``train`` (search), ``retrain``, ``export``,
``latency``. Sub-packages by role: ``commandline`` (override checks, option schema),
``search`` (algorithms and search-time Lightning code), ``retraining``, ``training`` (data
modules both use), ``storage`` (run dirs, files, checkpoints, genotype files), ``tables``
(benchmark and cost tables), ``render`` (diagrams and plots), ``conf`` (the YAML configs).
"""

__version__ = "0.1.0"

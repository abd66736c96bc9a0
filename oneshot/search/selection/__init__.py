"""Choosing the final genotype after a search: perturbation-based selection (DARTS-PT).

``selection=argmax`` (the default) keeps the space's derive rule on the final alphas;
``selection=perturbation`` decides edge by edge by what removing a candidate costs the supernet
(:mod:`oneshot.search.selection.perturbation`), fine-tuning in between
(:mod:`oneshot.search.selection.runner`).
"""

"""Searches over the architectures of a trained supernet: aging evolution and random search.

Both see a space as its decisions (:class:`~supernets.decisions.Choice`, each picking one of
its candidates), an architecture as ``{label: index}``, and ask a ``score`` function for the
fitness of each architecture they try (higher is better).
"""

from oneshot.search.strategies.base import SearchResult, mutate, uniform_architecture
from oneshot.search.strategies.evolution import aging_evolution
from oneshot.search.strategies.random_search import random_search

STRATEGIES = ("evolution", "random")

__all__ = ["STRATEGIES", "SearchResult", "aging_evolution", "mutate", "random_search",
           "uniform_architecture"]

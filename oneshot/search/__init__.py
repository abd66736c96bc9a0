"""Search-time Lightning code: the algorithms (``algorithms``), post-training search strategies
(``strategies``), the alphas (``architecture``), callbacks, DDP strategy, loss guard and resume."""

"""The NAS-Bench-201 cell space (Dong & Yang, 2020): one 4-node cell, 6 edges, 5 operations."""

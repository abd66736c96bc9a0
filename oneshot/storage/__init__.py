"""Run dirs and files: which run owns which dir, atomic writes, checkpoints (the one reader and
the atomic writer), genotype files wherever they are, sweep summaries."""

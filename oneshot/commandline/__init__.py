"""The command line: override checks and one-line errors (``checks``), every option's type and
range (``schema``), and Hydra configs for spaces that ship no YAML (``spaces``). Nothing here
imports torch, so a typo is answered before the heavy imports."""

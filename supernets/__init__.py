"""Search spaces in plain PyTorch: choices, supernets, genotypes and the networks they derive.

The public API for writing a space::

    from supernets import InputChoice, OpChoice, Supernet, check_space, register_op

See :mod:`supernets.supernet` for how a space is written.
"""

from supernets.choice_genotype import ChoiceGenotype
from supernets.choices import InputChoice, OpChoice
from supernets.contract import check_space
from supernets.ops import register_op
from supernets.spaces import register_space
from supernets.supernet import Supernet

__all__ = ["ChoiceGenotype", "InputChoice", "OpChoice", "Supernet", "check_space", "register_op",
           "register_space"]

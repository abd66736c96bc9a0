"""Errors raised for bad user input in search spaces and genotypes."""


class SpaceError(ValueError):
    """An unknown search space, operation or malformed architecture."""


class GenotypeError(ValueError):
    """A genotype (object, JSON or text form) that is malformed or does not fit its space."""

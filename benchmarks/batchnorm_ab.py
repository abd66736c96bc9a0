"""A/B in one process: the DARTS step with the BatchNorms of :class:`supernets.batchnorm.BatchNorm2d`
(``new``: maps of fewer than 16 channels normalised through their wide channels-last view)
against ``nn.BatchNorm2d``'s kernels throughout (``old``).

Both variants are the same supernet (same weights); the variants alternate step by step (the
order flips every round, after an untimed round) so that the machine's load weighs on both alike.
A step is the first-order DARTS step maths of ``profile_darts_step.py``. Only supernets with
fewer than 16 channels in some cell differ (the small configuration's first cells have 8).

    python benchmarks/batchnorm_ab.py                       # batch 32, 8 ch, 5 cells, 5 rounds
    python benchmarks/batchnorm_ab.py --batch 64 --channels 16 --layers 8 --rounds 3
"""

from __future__ import annotations

import sys

from profile_darts_step import ab_setup, alternating_step_seconds, print_old_new
from supernets.batchnorm import use_batchnorm_wide_view


def main(argv: list[str]) -> None:
    args, setup = ab_setup(argv, __doc__.splitlines()[0], rounds=5)
    seconds = alternating_step_seconds(
        setup, ("old", "new"), lambda variant: use_batchnorm_wide_view(setup[0], variant == "new"),
        args.rounds)
    print_old_new(args, seconds)


if __name__ == "__main__":
    main(sys.argv[1:])

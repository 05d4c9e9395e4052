"""The conventions the metrics follow: rex-stream's own, or Quantus 0.6.0's.

Every difference between the two is one named field of :class:`Conventions`, so a metric asks
the question it cares about (``case.conventions.element_features``) instead of testing one flag
for many meanings. There are two sets: :data:`REX_STREAM` (the default) and :data:`QUANTUS`
(``--quantus-compatible``, ``evaluate(..., quantus_compatible=True)``);
:meth:`Conventions.for_flag` picks one.
"""

from __future__ import annotations

from dataclasses import dataclass

from rex_stream.engine.subject import Subject
from rex_stream.errors import InputError


@dataclass(frozen=True)
class Conventions:
    """How features, rankings, random draws, baselines and patches are defined."""

    #: how the conventions are shown ("rex-stream" or "quantus-0.6.0")
    name: str
    #: a feature is one element of the input tensor (the map broadcast over the channels),
    #: else one spatial position with all its channels
    element_features: bool
    #: inputs must be channel-first, (C, H, W) (Quantus broadcasts maps that way)
    channel_first: bool
    #: maps, and the means of segments, are computed in float64; else in the map's own dtype,
    #: in Quantus' order of operations
    float64_maps: bool
    #: features rank by :func:`~rex_stream.engine.ranking.rank_elements` (descending value,
    #: ties to the larger index); else by numpy's unstable ``argsort``, as Quantus ranks them
    stable_ranking: bool
    #: each metric draws from ``default_rng`` seeded by (seed, input, metric); else from
    #: numpy's legacy generator seeded as ``np.random.seed(seed)``
    seeded_per_metric: bool
    #: every baseline value drawn takes one uniform number from the generator, whatever the
    #: baseline (Quantus does), so later draws shift as Quantus' do
    draw_per_baseline: bool
    #: the "black" baseline is the input's minimum; else the mode's own baseline
    black_is_minimum: bool
    #: patches tile the (2-D) input zero-padded as Quantus pads it (half the remainder
    #: before), and their sums run over the channel-broadcast map in Quantus' element order
    padded_patches: bool
    #: IROF's "mean" baseline is the mean of the input as perturbed so far (changing every
    #: step), as Quantus computes it; else the input's mean
    running_mean: bool
    #: random-logit's SSIM compares the maps flattened to 1-D; else over their spatial axes
    flat_ssim: bool

    @classmethod
    def for_flag(cls, quantus_compatible: bool) -> Conventions:
        """:data:`QUANTUS` when ``quantus_compatible`` (``--quantus-compatible``), else
        :data:`REX_STREAM`."""
        return QUANTUS if quantus_compatible else REX_STREAM

    @property
    def quantus_compatible(self) -> bool:
        """Whether these are Quantus 0.6.0's conventions (what stores and reports record)."""
        return self == QUANTUS

    def check_input(self, subject: Subject) -> None:
        """Refuse, in one line, an input these conventions cannot lay the map over."""
        ndim = subject.tensor.ndim
        trailing = tuple(range(ndim - len(subject.spatial_axes), ndim))
        if self.channel_first and subject.spatial_axes != trailing:
            raise InputError(
                f"--quantus-compatible needs a channel-first input (C, H, W); the model takes "
                f"{subject.tensor.shape} with spatial axes {subject.spatial_axes}"
            )


#: rex-stream's own conventions (the default).
REX_STREAM = Conventions(
    name="rex-stream",
    element_features=False,
    channel_first=False,
    float64_maps=True,
    stable_ranking=True,
    seeded_per_metric=True,
    draw_per_baseline=False,
    black_is_minimum=False,
    padded_patches=False,
    running_mean=False,
    flat_ssim=False,
)

#: Quantus 0.6.0's conventions (``--quantus-compatible``).
QUANTUS = Conventions(
    name="quantus-0.6.0",
    element_features=True,
    channel_first=True,
    float64_maps=False,
    stable_ranking=False,
    seeded_per_metric=False,
    draw_per_baseline=True,
    black_is_minimum=True,
    padded_patches=True,
    running_mean=True,
    flat_ssim=True,
)

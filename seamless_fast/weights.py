"""Placeholder: being written."""
from typing import NamedTuple
class OverlapWeights(NamedTuple):
    out_geom: object
def overlap_weights(*a, **k): raise NotImplementedError
def apply_weights(*a, **k): raise NotImplementedError

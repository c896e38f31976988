"""Placeholder: being written."""
def batched_tile_get(*a, **k): raise NotImplementedError
def threaded_batched_tile_get(*a, **k): raise NotImplementedError

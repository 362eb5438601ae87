"""Flax Linen networks; pure functions through `model.apply(params, ...)`."""

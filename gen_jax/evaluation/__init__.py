"""Evaluation: a dataset classifier for alignment (and, with the evaluation issue, FID / IS / KID)."""

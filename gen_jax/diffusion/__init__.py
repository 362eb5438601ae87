"""Gaussian diffusion (DDPM): noise schedules and the forward / reverse process math."""

from gen_jax.diffusion.gaussian import KINDS, VARIANCES, BoundTerms, GaussianDiffusion
from gen_jax.diffusion.schedules import beta_schedule, cosine_betas, linear_betas

__all__ = ['KINDS', 'VARIANCES', 'BoundTerms', 'GaussianDiffusion', 'beta_schedule', 'cosine_betas',
           'linear_betas']

"""gen_jax: generative image models (VAE, GANs, DDPM) in JAX/Flax with one training loop."""

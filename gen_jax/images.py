"""Sample grids: [-1, 1] float batches -> one uint8 image -> PNG files people can look at."""

from __future__ import annotations

import io
import math

import einops
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from gen_jax import workdir


def to_uint8(images: np.ndarray) -> np.ndarray:
  """[-1, 1] floats -> uint8 0..255 (rounded, clipped): what a saved PNG holds."""
  return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def quantize(images: jax.Array) -> jax.Array:
  """`to_uint8` on device (the same float32 arithmetic and round-half-even), for samples scored in bulk."""
  return jnp.clip(jnp.rint((images.astype(jnp.float32) + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def make_grid(images: np.ndarray, columns: int | None = None, padding: int = 1) -> np.ndarray:
  """[n h w c] in [-1, 1] -> uint8 [(rows h') (columns w') c] with `padding` black pixels between tiles."""
  images = to_uint8(images)
  n = images.shape[0]
  columns = columns or math.ceil(math.sqrt(n))
  rows = math.ceil(n / columns)
  blank = np.zeros((rows * columns - n, *images.shape[1:]), np.uint8)
  tiles = np.concatenate([images, blank])
  tiles = np.pad(tiles, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  return einops.rearrange(tiles, '(r k) h w c -> (r h) (k w) c', r=rows, k=columns)


def png_bytes(grid: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(buffer, format='PNG')
  return buffer.getvalue()


def save_png(path, grid: np.ndarray) -> None:
  """Writes a uint8 [h w c] grid (c = 1 or 3) atomically (a viewer never sees half a file), locally or gs://."""
  workdir.write_bytes(path, png_bytes(grid))


def captioned(grid: np.ndarray, caption: str, min_width: int = 256) -> np.ndarray:
  """A uint8 [h w c] grid, upscaled (nearest) to at least `min_width` pixels, with `caption` written above it."""
  from PIL import ImageDraw, ImageFont

  font = ImageFont.load_default(size=14)  # Pillow's bundled scalable font (the bitmap one drops spaces)
  scale = max(1, -(-min_width // grid.shape[1]))
  big = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
  image = Image.fromarray(big[..., 0] if big.shape[-1] == 1 else big).convert('RGB')
  draw = ImageDraw.Draw(image)
  box = draw.textbbox((0, 0), caption, font=font)
  width, height = max(image.width, box[2] + 8), box[3] + 10
  canvas = Image.new('RGB', (width, height + image.height), 'white')
  ImageDraw.Draw(canvas).text((4, 4), caption, fill='black', font=font)
  canvas.paste(image, (0, height))
  return np.asarray(canvas)

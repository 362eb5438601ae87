"""Forward, backward and its two halves of the DDPM UNet, gen_jax against the diffusers peer: where a step's time goes.

  python benchmarks/unet_phases.py [--peer_python ../shared/peers/.venv-peers/bin/python] [--no_attention]
      [--rounds 2] [--steps 10] [--ch 64 --batch 16 --size 32 --res_blocks 2]

Times three compiled (gen_jax) or eager (torch) calls of the same net (ch 64, ch_mult (1, 2, 2), attention at 16x16
and in the middle, dropout 0.1, as `benchmarks/peer_rounds.py`'s UNet and ../shared/peers/torch_ddpm_unet_bench.py),
each the median of --steps after a warm-up, no optimizer: the forward with the loss (train mode), forward + backward
for every parameter, and forward + backward for the input alone (the input-gradient chain: no kernel gradients). From
them: backward = full - forward, kernel gradients = full - input-only. With --peer_python (the peers' venv: torch and
diffusers) each round runs gen_jax and the peer in separate processes, alternating which goes first, and prints
gen_jax / peer per phase. --no_attention drops the attention blocks at 16x16 and dropout on both sides (the middle
block's attention at 8x8 stays, as gen_jax's UNet always has it): a conv / GroupNorm / SiLU net.
`--side torch` is the peer's half (what --peer_python runs). Prints readable lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _median_ms(fn, steps: int) -> float:
  fn()
  fn()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times) * 1e3


def jax_phases(args) -> dict[str, float]:
  sys.path.insert(0, ROOT)
  import jax
  import jax.numpy as jnp
  import numpy as np

  from gen_jax import compiler
  from gen_jax.models.unet import UNet

  net = UNet(ch=args.ch, ch_mult=(1, 2, 2), num_res_blocks=args.res_blocks,
             attn_resolutions=() if args.no_attention else (args.size // 2,), dropout=0.0 if args.no_attention else 0.1)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(-1, 1, (args.batch, args.size, args.size, 3)).astype(np.float32))
  t = jnp.asarray(rng.integers(0, 1000, args.batch).astype(np.int32))
  params = jax.jit(lambda: net.init({'params': jax.random.key(0)}, x, t, train=False)['params'])()
  key = jax.random.key(1)

  def loss(p, x):
    out = net.apply({'params': p}, x, t, train=True, rngs={'dropout': key})
    return jnp.mean(jnp.square(out - x))

  calls = {'forward': compiler.jit(loss), 'forward_backward': compiler.jit(jax.grad(loss)),
           'forward_input_backward': compiler.jit(jax.grad(loss, argnums=1))}
  return {name: _median_ms(lambda f=f: jax.block_until_ready(f(params, x)), args.steps)
          for name, f in calls.items()}


def torch_phases(args) -> dict[str, float]:
  import torch
  from diffusers import UNet2DModel

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  attention = not args.no_attention
  net = UNet2DModel(sample_size=args.size, in_channels=3, out_channels=3, block_out_channels=(args.ch, 2 * args.ch,
                    2 * args.ch), layers_per_block=args.res_blocks, attention_head_dim=None, norm_num_groups=32,
                    down_block_types=('DownBlock2D', 'AttnDownBlock2D' if attention else 'DownBlock2D', 'DownBlock2D'),
                    up_block_types=('UpBlock2D', 'AttnUpBlock2D' if attention else 'UpBlock2D', 'UpBlock2D'),
                    dropout=0.1 if attention else 0.0, add_attention=True).train()
  x = torch.rand(args.batch, 3, args.size, args.size) * 2 - 1
  t = torch.randint(0, 1000, (args.batch,))
  x_grad = x.clone().requires_grad_(True)

  def loss(inp):
    return torch.mean(torch.square(net(inp, t).sample - x))

  def forward():
    loss(x)

  def forward_backward():
    net.zero_grad(set_to_none=True)
    loss(x).backward()

  def forward_input_backward():  # timed with the params frozen (below), so only the input gets a gradient
    loss(x_grad).backward()
    x_grad.grad = None

  ms = {'forward': _median_ms(forward, args.steps), 'forward_backward': _median_ms(forward_backward, args.steps)}
  net.requires_grad_(False)
  ms['forward_input_backward'] = _median_ms(forward_input_backward, args.steps)
  return ms


def with_halves(ms: dict[str, float]) -> dict[str, float]:
  """Adds backward (full - forward), the input-gradient chain (input-only - forward) and the kernel gradients
  (full - input-only)."""
  return {**ms, 'backward': ms['forward_backward'] - ms['forward'],
          'input_gradient_chain': ms['forward_input_backward'] - ms['forward'],
          'kernel_gradients': ms['forward_backward'] - ms['forward_input_backward']}


def run_side(side: str, args, python: str) -> dict[str, float]:
  from peer_rounds import run  # benchmarks/peer_rounds.py: a subprocess's last JSON line, its stderr if it failed

  return run([python, os.path.abspath(__file__), '--side', side, *_shared_flags(args)], ROOT)['ms']


def _shared_flags(args) -> list[str]:
  flags = [f'--steps={args.steps}', f'--ch={args.ch}', f'--batch={args.batch}', f'--size={args.size}',
           f'--threads={args.threads}', f'--res_blocks={args.res_blocks}']
  return flags + (['--no_attention'] if args.no_attention else [])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--side', choices=('jax', 'torch'), default='')
  parser.add_argument('--peer_python', default='', help="the peers' venv python (torch + diffusers)")
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--ch', type=int, default=64)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--size', type=int, default=32)
  parser.add_argument('--res_blocks', type=int, default=2, help='res blocks per level (2 as the peer)')
  parser.add_argument('--threads', type=int, default=2, help='torch threads (XLA uses every core it is given)')
  parser.add_argument('--no_attention', action='store_true')
  args = parser.parse_args()
  if args.side:  # one side, in this process
    ms = (jax_phases if args.side == 'jax' else torch_phases)(args)
    print(json.dumps({'side': args.side, 'ms': ms}))
    return
  rounds = []
  for r in range(args.rounds):
    sides = ('jax', 'torch') if r % 2 == 0 else ('torch', 'jax')
    if not args.peer_python:
      sides = ('jax',)
    got = {side: with_halves(run_side(side, args, sys.executable if side == 'jax' else args.peer_python))
           for side in sides}
    rounds.append(got)
    for phase in got['jax']:
      line = f'round {r} {phase:24s} gen_jax {got["jax"][phase]:8.1f} ms'
      if 'torch' in got:
        line += f'  peer {got["torch"][phase]:8.1f} ms  ratio {got["jax"][phase] / got["torch"][phase]:.2f}'
      print(line, flush=True)
  medians = {side: {phase: round(statistics.median(r[side][phase] for r in rounds), 1) for phase in rounds[0][side]}
             for side in rounds[0]}
  print(json.dumps({'rounds': args.rounds, 'no_attention': args.no_attention, 'median_ms': medians}))


if __name__ == '__main__':
  main()

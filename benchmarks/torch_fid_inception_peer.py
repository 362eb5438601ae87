"""PyTorch peer for benchmarks/inception_throughput.py: pytorch-fid's InceptionV3 forward, img/s on the CPU.

  ../shared/peers/.venv-peers/bin/python benchmarks/torch_fid_inception_peer.py --batch 100 [--compile]

The same network as pytorch-fid's fid_inception_v3() (torchvision Inception3 with the FID A/C/E blocks; written
out here so the peers' venv needs no torchvision, which breaks `import diffusers` with the CPU wheel), with
random weights (the cost does not depend on them), in eval mode under torch.inference_mode, preprocessing as
pytorch-fid's wrapper: uint8 -> /255 -> bilinear 299x299 (align_corners=False) -> 2x-1. Prints a line, then JSON.
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn


class Conv(nn.Module):
  def __init__(self, cin, cout, kernel, stride=1, padding=0):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
    self.bn = nn.BatchNorm2d(cout, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def avg(x):
  return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class A(nn.Module):
  def __init__(self, cin, pool):
    super().__init__()
    self.b1 = Conv(cin, 64, 1)
    self.b5 = nn.Sequential(Conv(cin, 48, 1), Conv(48, 64, 5, padding=2))
    self.b3 = nn.Sequential(Conv(cin, 64, 1), Conv(64, 96, 3, padding=1), Conv(96, 96, 3, padding=1))
    self.bp = Conv(cin, pool, 1)

  def forward(self, x):
    return torch.cat([self.b1(x), self.b5(x), self.b3(x), self.bp(avg(x))], 1)


class B(nn.Module):
  def __init__(self, cin):
    super().__init__()
    self.b3 = Conv(cin, 384, 3, 2)
    self.bd = nn.Sequential(Conv(cin, 64, 1), Conv(64, 96, 3, padding=1), Conv(96, 96, 3, 2))

  def forward(self, x):
    return torch.cat([self.b3(x), self.bd(x), F.max_pool2d(x, 3, 2)], 1)


class C(nn.Module):
  def __init__(self, cin, c7):
    super().__init__()
    row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
    self.b1 = Conv(cin, 192, 1)
    self.b7 = nn.Sequential(Conv(cin, c7, 1), Conv(c7, c7, **row), Conv(c7, 192, **col))
    self.bd = nn.Sequential(Conv(cin, c7, 1), Conv(c7, c7, **col), Conv(c7, c7, **row), Conv(c7, c7, **col),
                            Conv(c7, 192, **row))
    self.bp = Conv(cin, 192, 1)

  def forward(self, x):
    return torch.cat([self.b1(x), self.b7(x), self.bd(x), self.bp(avg(x))], 1)


class D(nn.Module):
  def __init__(self, cin):
    super().__init__()
    self.b3 = nn.Sequential(Conv(cin, 192, 1), Conv(192, 320, 3, 2))
    self.b7 = nn.Sequential(Conv(cin, 192, 1), Conv(192, 192, (1, 7), padding=(0, 3)),
                            Conv(192, 192, (7, 1), padding=(3, 0)), Conv(192, 192, 3, 2))

  def forward(self, x):
    return torch.cat([self.b3(x), self.b7(x), F.max_pool2d(x, 3, 2)], 1)


class E(nn.Module):
  def __init__(self, cin, pool):
    super().__init__()
    self.pool = pool
    self.b1 = Conv(cin, 320, 1)
    self.b3 = Conv(cin, 384, 1)
    self.b3a, self.b3b = Conv(384, 384, (1, 3), padding=(0, 1)), Conv(384, 384, (3, 1), padding=(1, 0))
    self.bd = nn.Sequential(Conv(cin, 448, 1), Conv(448, 384, 3, padding=1))
    self.bda, self.bdb = Conv(384, 384, (1, 3), padding=(0, 1)), Conv(384, 384, (3, 1), padding=(1, 0))
    self.bp = Conv(cin, 192, 1)

  def forward(self, x):
    b3, bd = self.b3(x), self.bd(x)
    pooled = avg(x) if self.pool == 'avg' else F.max_pool2d(x, 3, 1, 1)
    return torch.cat([self.b1(x), self.b3a(b3), self.b3b(b3), self.bda(bd), self.bdb(bd), self.bp(pooled)], 1)


class FIDInception(nn.Module):
  def __init__(self):
    super().__init__()
    self.net = nn.Sequential(
        Conv(3, 32, 3, 2), Conv(32, 32, 3), Conv(32, 64, 3, padding=1), nn.MaxPool2d(3, 2),
        Conv(64, 80, 1), Conv(80, 192, 3), nn.MaxPool2d(3, 2),
        A(192, 32), A(256, 64), A(288, 64), B(288), C(768, 128), C(768, 160), C(768, 160), C(768, 192),
        D(768), E(1280, 'avg'), E(2048, 'max'))
    self.fc = nn.Linear(2048, 1008)

  def forward(self, images_uint8):
    x = images_uint8.permute(0, 3, 1, 2).float() / 255.0
    x = 2.0 * F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False) - 1.0
    pool3 = self.net(x).mean((2, 3))
    return pool3, self.fc(pool3)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--batch', type=int, default=100)
  parser.add_argument('--image_size', type=int, default=32)
  parser.add_argument('--calls', type=int, default=3)
  parser.add_argument('--threads', type=int, default=2)
  parser.add_argument('--compile', action='store_true')
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  model = FIDInception().eval()
  assert sum(p.numel() for p in model.parameters()) == 23_850_960  # pytorch-fid's parameter count
  run = torch.compile(model) if args.compile else model
  images = torch.randint(0, 256, (args.batch, args.image_size, args.image_size, 3), dtype=torch.uint8)
  with torch.inference_mode():
    t0 = time.perf_counter()
    run(images)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.calls):
      run(images)
    timed_s = time.perf_counter() - t0
  rate = args.batch * args.calls / timed_s
  mode = 'torch.compile' if args.compile else 'eager'
  print(f'torch {torch.__version__} {mode}, {args.threads} threads: {rate:.1f} img/s at batch {args.batch}; '
        f'first call {first_s:.1f} s')
  print(json.dumps({'peer': 'pytorch-fid InceptionV3', 'mode': mode, 'batch': args.batch, 'images_per_s':
                    round(rate, 1), 'first_call_s': round(first_s, 1), 'torch': torch.__version__}))


if __name__ == '__main__':
  main()

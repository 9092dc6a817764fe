"""PyTorch's side of the cnn-bn quality bar (optional; needs torch and numpy).

    python3 bench/torch-train.py [--model cnn-bn] [--epochs 1] [--seeds 0,1,2] [--threads 2]
                                 [--normalize] [--data DIR]

Trains the model with issue 3's recipe (SGD lr 0.05 momentum 0.9, batch 64,
shuffled each epoch, last partial batch kept) on the same IDX files bnkit's
CLI reads, and prints one JSON line per seed with the test accuracy after
each epoch and the epoch times, then a summary line. It exists so that
bnkit's accuracy and speed figures have a PyTorch distribution measured on the
same machine next to them, instead of one recorded number.
"""
import argparse, json, os, statistics, sys, time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'lib'))
from torch_mnist import DEFAULT_DATA, build_model, load  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument('--model', default='cnn-bn')
p.add_argument('--epochs', type=int, default=1)
p.add_argument('--seeds', default='0')
p.add_argument('--threads', type=int, default=2)
p.add_argument('--normalize', action='store_true', help='standardize inputs with the training set mean/std')
p.add_argument('--data', default=DEFAULT_DATA)
args = p.parse_args()
torch.set_num_threads(args.threads)

train_x, train_y = load(args.data, 'train')
test_x, test_y = load(args.data, 't10k')
if args.normalize:
    mean, std = train_x.mean().item(), train_x.std().item()
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std


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
    model = build_model(args.model)
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
    print(json.dumps({'framework': f'torch {torch.__version__}', 'model': args.model, 'seed': seed,
                      'normalize': args.normalize, 'threads': args.threads, 'testAccuracy': accs,
                      'epochSeconds': seconds}), flush=True)
print(json.dumps({'summary': True, 'model': args.model, 'epochs': args.epochs, 'normalize': args.normalize,
                  'seeds': len(finals), 'meanAccuracy': round(statistics.mean(finals), 3), 'min': min(finals),
                  'max': max(finals)}))

"""PyTorch's half of `node bench/run.mjs mnist --pytorch` (needs torch and numpy).

    python3 bench/lib/torch_steps.py --model cnn-bn --batch-size 64 --threads 2 --data DIR

Builds the model the bench times in bnkit with PyTorch's default
initialization, prints "ready <torch version>", then answers each "steps N"
line on stdin by running N SGD steps (lr 0.05, momentum 0.9) on batches of
random training samples and printing "ms <milliseconds>". The bench
alternates these rounds with its own, so both frameworks see the same load.
Waiting on stdin, this process uses no CPU while bnkit runs.
"""
import argparse, sys, time

import torch
import torch.nn.functional as F

from torch_mnist import build_model, load

p = argparse.ArgumentParser()
p.add_argument('--model', default='cnn-bn')
p.add_argument('--batch-size', type=int, default=64)
p.add_argument('--threads', type=int, default=2)
p.add_argument('--data', required=True)
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

images, labels = load(args.data, 'train')
model = build_model(args.model)
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

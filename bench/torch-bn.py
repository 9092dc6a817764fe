#!/usr/bin/env python3
"""PyTorch's CPU batch norm (NCHW) on the reference shapes, for comparison with
`npm run bench -- bn` (issue 2 asks bnkit to be at least 3x faster in NCHW).

    /usr/bin/python3 bench/torch-bn.py [threads]      (default 2; Debian's python3-torch)

Prints median microseconds per call of training forward, inference forward and
backward (autograd through a training forward), each timed in 2 ms samples
for about 1.5 s. Run it right before or after the bnkit benchmark: the
machine is shared and its speed drifts.
"""
import statistics
import sys
import time

import torch

SHAPES = {'S1': (64, 32, 28, 28), 'S2': (64, 64, 14, 14), 'S3': (32, 64, 112, 112), 'S5': (8, 256, 7, 7)}


def median_us(fn, budget=1.5, sample=0.002):
    for _ in range(5):
        fn()
    start = time.perf_counter()
    fn()
    calls = max(1, int(sample / max(1e-7, time.perf_counter() - start)))
    times = []
    end = time.perf_counter() + budget
    while time.perf_counter() < end or len(times) < 9:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(times)


def main():
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    torch.manual_seed(0)
    for name, shape in SHAPES.items():
        c = shape[1]
        x = torch.randn(*shape) + 0.5
        weight, bias = torch.ones(c), torch.zeros(c)
        running_mean, running_var = torch.zeros(c), torch.ones(c)
        xg, wg, bg = (t.clone().requires_grad_(True) for t in (x, weight, bias))
        dy = torch.randn(*shape)
        y = torch.nn.functional.batch_norm(xg, running_mean, running_var, wg, bg, training=True)

        def forward(training):
            with torch.no_grad():
                torch.nn.functional.batch_norm(x, running_mean, running_var, weight, bias, training=training)

        figures = [
            median_us(lambda: forward(True)),
            median_us(lambda: forward(False)),
            median_us(lambda: torch.autograd.grad(y, (xg, wg, bg), dy, retain_graph=True)),
        ]
        print(f'PyTorch {torch.__version__} NCHW {name} {torch.get_num_threads()} threads: '
              f'fwd-train {figures[0]:.1f}  fwd-eval {figures[1]:.1f}  bwd {figures[2]:.1f} us', flush=True)


if __name__ == '__main__':
    main()

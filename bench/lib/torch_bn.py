"""PyTorch's half of `node bench/run.mjs bn --pytorch` (needs torch).

    python3 bench/lib/torch_bn.py

Prints "ready <torch version>", then answers one line per request:
  setup N C THREADS CHANNELS_LAST [SPATIAL...]  -> "ok"
      random input of shape (N, C, *SPATIAL) (channels-last memory format when
      CHANNELS_LAST is 1 and there are 2 spatial axes), weight, bias and
      running statistics, and a training forward kept for backward
  run OP CALLS  -> "s <seconds per call>"; OP is fwd-train, fwd-eval or bwd
      (backward is autograd through the kept training forward: dx, dweight, dbias)
  quit
Waiting on stdin, this process uses no CPU while bnkit runs.
"""
import sys
import time

import torch
import torch.nn.functional as F

torch.manual_seed(0)
state = {}


def setup(n, c, threads, channels_last, spatial):
    torch.set_num_threads(threads)
    x = torch.randn(n, c, *spatial) * 4 + 0.5
    if channels_last and len(spatial) == 2:
        x = x.contiguous(memory_format=torch.channels_last)
    weight, bias = torch.rand(c) + 0.5, torch.rand(c) - 0.5
    running_mean, running_var = torch.zeros(c), torch.ones(c)
    xg, wg, bg = (t.clone().requires_grad_(True) for t in (x, weight, bias))
    y = F.batch_norm(xg, running_mean, running_var, wg, bg, training=True)
    dy = torch.randn_like(y)

    def forward(training):
        with torch.no_grad():
            F.batch_norm(x, running_mean, running_var, weight, bias, training=training)

    state['ops'] = {
        'fwd-train': lambda: forward(True),
        'fwd-eval': lambda: forward(False),
        'bwd': lambda: torch.autograd.grad(y, (xg, wg, bg), dy, retain_graph=True),
    }


def main():
    print(f'ready {torch.__version__}', flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == 'quit':
            return
        if words[0] == 'setup':
            n, c, threads, channels_last = (int(w) for w in words[1:5])
            setup(n, c, threads, channels_last == 1, [int(w) for w in words[5:]])
            print('ok', flush=True)
        elif words[0] == 'run' and 'ops' in state and words[1] in state['ops']:
            op, calls = state['ops'][words[1]], int(words[2])
            start = time.perf_counter()
            for _ in range(calls):
                op()
            print(f's {(time.perf_counter() - start) / calls!r}', flush=True)
        else:
            print(f'error: cannot do {line.strip()!r}', flush=True)


if __name__ == '__main__':
    main()

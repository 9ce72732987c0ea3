#!/usr/bin/env python3
"""PyTorch reference for promcast's LSTM forecaster benchmark.

The Rust benchmark runs this (through ./run) as a subprocess and compares its
numbers against its own, so the workload here must stay identical to the one
on the Rust side: 2-layer LSTM (1 -> 50 -> 50) plus Linear(50 -> 1) on the last
step, 144 windows of 24 hourly points, full-batch Adam(1e-3), MSE, 100 epochs.

With --own-steps and --own-validation it also times an epoch of promcast's
own training configuration (TrainConfig::default()): the same network as the
server trains (2-layer LSTM 5 -> 50 -> 50, a head 50 -> 361 plus a weight on
the seasonal-naive input), 4,096 windows an epoch in batches of 128, each
window a sequence of --own-steps points (promcast pads a batch to its longest
window) read at its own last point, a weighted L1 loss, Adam(2e-3); then a
forward pass over --own-validation windows, as promcast validates each epoch.

Only the result goes to stdout; everything else goes to stderr so that the
caller can parse stdout as-is.
"""

import argparse
import json
import math
import statistics
import sys
import time

SEED = 42
POINTS = 168
WINDOW = 24
HIDDEN = 50
LAYERS = 2
EPOCHS = 100
LR = 1e-3

LATENCY_WARMUP, LATENCY_REPS = 20, 200

# promcast's own training configuration (see the module docstring).
OWN_INPUTS, OWN_OUTPUTS = 5, 361
OWN_WINDOWS, OWN_BATCH, OWN_LR = 4096, 128, 2e-3
OWN_VALIDATION_BATCH = 1024
OWN_EPOCHS = 3
# Big batches take long enough that a few repetitions give a stable median.
BATCH_WARMUP = 2
BATCH_REPS = {1_000: 20, 10_000: 5}


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--own-steps", type=int, help="points a window of promcast's own configuration")
    p.add_argument("--own-validation", type=int, help="validation windows an epoch of it")
    args = p.parse_args()
    if args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def make_data(torch):
    gen = torch.Generator().manual_seed(SEED)
    t = torch.linspace(0.0, 4.0 * math.pi, POINTS, dtype=torch.float64)
    noise = torch.randn(POINTS, generator=gen, dtype=torch.float64) * 5.0
    series = 50.0 + 20.0 * torch.sin(t) + noise
    scaled = (series - series.min()) / (series.max() - series.min())
    # unfold yields one window more than there are targets: the last one has no next point.
    x = scaled.unfold(0, WINDOW, 1)[:-1].unsqueeze(-1).float().contiguous()
    y = scaled[WINDOW:].unsqueeze(-1).float()
    return x, y


def make_model(torch):
    nn = torch.nn

    class Forecaster(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(1, HIDDEN, num_layers=LAYERS, batch_first=True)
            self.head = nn.Linear(HIDDEN, 1)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(out[:, -1, :])

    # Seeded so that final_train_loss is repeatable from run to run.
    torch.manual_seed(SEED)
    return Forecaster()


def train(torch, model, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.MSELoss()
    model.train()
    # No warm-up on purpose: the comparison is "fresh model to trained model",
    # so one-time costs of the first step belong in the number.
    start = time.perf_counter()
    for _ in range(EPOCHS):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - start
    return elapsed, loss.item()


def own_epoch_s(torch, steps, validation):
    """Median seconds of OWN_EPOCHS epochs of promcast's own configuration."""
    nn = torch.nn

    class Own(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(OWN_INPUTS, HIDDEN, num_layers=LAYERS, batch_first=True)
            self.head = nn.Linear(HIDDEN, OWN_OUTPUTS)
            self.seasonal_weight = nn.Parameter(torch.ones(OWN_OUTPUTS))

        def forward(self, x, read_at, seasonal):
            out, _ = self.lstm(x)
            states = out[torch.arange(x.shape[0]), read_at]
            return self.head(states) + seasonal * self.seasonal_weight

    gen = torch.Generator().manual_seed(SEED)

    def windows(n):
        return (
            torch.randn(n, steps, OWN_INPUTS, generator=gen),
            # Each window ends between half the lookback and all of it.
            torch.randint(steps // 2, steps, (n,), generator=gen),
            torch.randn(n, OWN_OUTPUTS, generator=gen),
            torch.randn(n, OWN_OUTPUTS, generator=gen),
        )

    train_set, val_set = windows(OWN_WINDOWS), windows(validation)
    step_weights = torch.rand(OWN_OUTPUTS, generator=gen)
    torch.manual_seed(SEED)
    model = Own()
    opt = torch.optim.Adam(model.parameters(), lr=OWN_LR)

    def loss_of(batch):
        x, read_at, seasonal, target = batch
        diff = (model(x, read_at, seasonal) - target).abs() * step_weights
        return diff.sum() / target.numel()

    samples = []
    for _ in range(OWN_EPOCHS):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(OWN_WINDOWS, generator=gen)
        for first in range(0, OWN_WINDOWS, OWN_BATCH):
            idx = order[first:first + OWN_BATCH]
            opt.zero_grad(set_to_none=True)
            loss = loss_of(tuple(t[idx] for t in train_set))
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            for first in range(0, validation, OWN_VALIDATION_BATCH):
                loss_of(tuple(t[first:first + OWN_VALIDATION_BATCH] for t in val_set))
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def median_seconds(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main():
    args = parse_args()
    try:
        import torch
    except Exception as err:  # a half-installed torch fails with OSError/ValueError, not ImportError
        # Same contract as ./run, for callers that start this file with their own python.
        log(f"pytorch reference skipped: cannot import torch ({err})")
        return 3

    # Before any work: torch refuses to change the interop pool once it has
    # been used, and the measurements must all see the same thread counts.
    torch.set_num_interop_threads(1)
    torch.set_num_threads(args.threads)
    log(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s), "
        f"{torch.get_num_interop_threads()} interop thread(s)")

    x, y = make_data(torch)
    model = make_model(torch)

    train_s, final_loss = train(torch, model, x, y)
    log(f"trained {EPOCHS} epochs on {x.shape[0]} windows in {train_s:.3f} s, loss {final_loss:.6f}")

    model.eval()
    windows_per_s = {}
    with torch.inference_mode():
        one = x[-1:].clone()
        latency_s = median_seconds(lambda: model(one), LATENCY_WARMUP, LATENCY_REPS)
        gen = torch.Generator().manual_seed(SEED + 1)
        for n, reps in BATCH_REPS.items():
            batch = torch.rand(n, WINDOW, 1, generator=gen)
            windows_per_s[n] = n / median_seconds(lambda: model(batch), BATCH_WARMUP, reps)

    own_s = None
    if args.own_steps and args.own_validation is not None:
        own_s = own_epoch_s(torch, args.own_steps, args.own_validation)
        log(f"own configuration: {own_s:.3f} s an epoch")

    result = {
        "own_epoch_s": own_s,
        "framework": "pytorch",
        "version": torch.__version__,
        "threads": args.threads,
        "train_s": train_s,
        "latency_1_ms": latency_s * 1e3,
        "windows_per_s_1k": windows_per_s[1_000],
        "windows_per_s_10k": windows_per_s[10_000],
        "final_train_loss": final_loss,
    }

    if args.json:
        print(json.dumps(result))
    else:
        print(f"pytorch {result['version']}, {args.threads} thread(s)")
        print(f"  train, {EPOCHS} epochs      {train_s:10.3f} s   (final loss {final_loss:.6f})")
        print(f"  latency, 1 window      {result['latency_1_ms']:10.3f} ms")
        print(f"  throughput, 1k batch   {windows_per_s[1_000]:10.0f} windows/s")
        print(f"  throughput, 10k batch  {windows_per_s[10_000]:10.0f} windows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

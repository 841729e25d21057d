"""Seconds per training step of the trainer's small GANs on this machine (no evaluation).

    OMP_NUM_THREADS=1 python benchmarks/ttur_step_time.py [--archs dcgan,wgan-gp:1,wgan-gp] [--steps 40]
                                                          [--threads 1] [--out benchmarks/results/ttur_step_time.json]

Each architecture trains ``--steps`` steps of the studies' configuration (batch 64, width 32,
Fashion-MNIST train; WGAN-GP: critic updates with gradient penalty per step, 5 by default,
``wgan-gp:1`` for one, as the time-scale study runs it) from seed 0
with evaluation off, and again with 5 steps; the record gives the difference per step (data
loading and start-up left out), to price the studies' plans before their runs record it.
"""
import argparse
import dataclasses
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fidkit.ttur.train import TrainConfig, train  # noqa: E402

RATES = {"dcgan": (4e-4, 1e-4), "wgan-gp": (3e-4, 1e-4)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", default="dcgan,wgan-gp:1,wgan-gp")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "ttur_step_time.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    record = {"command": "python benchmarks/ttur_step_time.py " + " ".join(sys.argv[1:]),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "threads": args.threads,
              "load_average_at_start": os.getloadavg(), "steps": args.steps, "seconds_per_step": {}}
    for name in args.archs.split(","):
        arch, _, n_critic = name.partition(":")
        lr_d, lr_g = RATES[arch]
        c = TrainConfig(arch=arch, data="fashion-mnist-train", steps=args.steps, lr_d=lr_d, lr_g=lr_g,
                        eval_every=0, eval_start=False, device="cpu", n_critic=int(n_critic) if n_critic else None)
        times = []
        for steps in (5, 5 + args.steps):  # the difference leaves out data loading and start-up
            t = time.perf_counter()
            train(dataclasses.replace(c, steps=steps), None)
            times.append(time.perf_counter() - t)
        record["seconds_per_step"][name] = round((times[1] - times[0]) / args.steps, 4)
        print(name, record["seconds_per_step"][name], "s per step", flush=True)
    record["load_average_at_end"] = os.getloadavg()
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()

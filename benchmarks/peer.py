"""One framework's training throughput in a process of its own, started by benchmarks/peers.py.

    python -m benchmarks.peer --framework ours --model resnet20 --weight-decay 5e-4
    /path/to/venv/bin/python -m benchmarks.peer --framework pytorch --model resnet50 \
        --image-size 224 --batch 16 --steps 3 --weight-decay 5e-4

Trains on one synthetic in-memory batch, one untimed epoch and then
`--epochs` timed ones, and prints one JSON line: images/s of each timed
epoch, what ran, and the share of the machine's CPU time its hypervisor
took meanwhile (`stolen`). `ours` is train.py's model and compile step (tf_keras);
`pytorch` is the CIFAR ResNet-20 with option-A shortcuts (written here) or
torchvision's ResNet-50, with the same batch and SGD (momentum 0.9, the same
weight decay), in eager PyTorch as its users train. The PyTorch side imports
nothing of ours, so it runs in any Python that has torch (and torchvision
for ResNet-50).
"""

import argparse
import json
import sys
import time

CLASSES = {"resnet20": 10, "resnet50": 1000}


def cpu_times():
    """The machine's CPU time so far, in clock ticks: (total, stolen by the hypervisor).

    None where /proc/stat is missing. A virtual machine's CPUs can be taken by
    its neighbours; the share taken while a process trains tells a slow
    process that is the machine's from one that is ours.
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def ours(args):
    """Rates of our train.py step under `fit`, and the oneDNN state TensorFlow reports."""
    from benchmarks.models import our_training_model
    from benchmarks.timing import training_throughput
    from resnet_keras.backend import ONEDNN, tf

    policy = "mixed_bfloat16" if args.precision == "bfloat16" else "float32"
    model = our_training_model(args.model, image_size=args.image_size,
                               classes=CLASSES[args.model], policy=policy)
    rates, _ = training_throughput({"ours": model}, image_size=args.image_size,
                                   batch_size=args.batch, classes=CLASSES[args.model],
                                   steps=args.steps, repeats=args.epochs)
    return {"rates": rates["ours"]["rounds"], "version": f"TensorFlow {tf.__version__}",
            "onednn": ONEDNN.to_dict()}


def pytorch(args):
    """Rates of an eager PyTorch train step with SGD, and the CPU kernels it dispatches to."""
    import torch
    from torch.nn import functional

    torch.manual_seed(0)
    model = _torch_model(args.model, classes=CLASSES[args.model])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                                weight_decay=args.weight_decay)
    images = torch.randint(0, 256, (args.batch, 3, args.image_size, args.image_size)).float()
    labels = torch.randint(0, CLASSES[args.model], (args.batch,))
    model.train()
    rates = []
    for epoch in range(args.epochs + 1):
        start = time.perf_counter()
        for _ in range(args.steps):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16,
                                enabled=args.precision == "bfloat16"):
                loss = functional.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
        if epoch:  # the first epoch allocates and warms up, as ours traces
            rates.append(args.steps * args.batch / (time.perf_counter() - start))
    return {"rates": rates, "version": f"PyTorch {torch.__version__}",
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads()}


def _torch_model(name, *, classes):
    if name == "resnet50":
        import torchvision
        return torchvision.models.resnet50(num_classes=classes)
    return _torch_resnet20(classes)


def _torch_resnet20(classes):
    """The paper's CIFAR ResNet-20 (Sec. 4.2): 3 stages of 3 basic blocks, 16/32/64 filters.

    Option A: a strided shortcut subsamples and zero-pads the new channels,
    as our `shortcut="A"` does with its fixed 1x1 conv.
    """
    import torch
    from torch import nn
    from torch.nn import functional

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.stride, self.pad = stride, cout - cin

        def forward(self, x):
            y = functional.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            short = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
            if self.pad:
                short = functional.pad(short, (0, 0, 0, 0, 0, self.pad))
            return functional.relu(y + short)

    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            layers.append(Block(cin, filters, 2 if stage and not block else 1))
            cin = filters
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes)]
    return torch.nn.Sequential(*layers)


FRAMEWORKS = {"ours": ours, "pytorch": pytorch}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", choices=FRAMEWORKS, required=True)
    parser.add_argument("--model", choices=CLASSES, required=True)
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15, help="steps an epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs, after one untimed")
    parser.add_argument("--weight-decay", type=float, required=True,
                        help="PyTorch's SGD weight decay: benchmarks/peers.py passes train.py's "
                             "(ours applies it as train.py does)")
    args = parser.parse_args(argv)
    before = cpu_times()
    result = FRAMEWORKS[args.framework](args)
    after = cpu_times()
    result["stolen"] = ((after[1] - before[1]) / max(after[0] - before[0], 1)
                        if before and after else None)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

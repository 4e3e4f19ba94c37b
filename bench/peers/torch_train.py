#!/usr/bin/env python3
"""PyTorch peer of Wren's training benchmark: the zoo models, Wren's default recipe.

One file over 700 lines on purpose: it runs on the GPU machine with nothing but torch
(bench/gpu-validate.sh calls it as one script), and both subcommands share its model definitions.

Two subcommands, each printing JSON lines on stdout (one object per line):

  throughput  full training steps (zero_grad, forward, cross-entropy, backward, optimizer step)
              on one synthetic batch kept on the device; eager, torch.compile, and optionally
              the whole step captured in a CUDA graph. One line per (model, batch, mode).
  tta         time to accuracy on Fashion-MNIST (MNIST-format IDX files, raw or .gz): Wren's
              default recipe (AdamW lr 1e-3, decoupled wd 5e-4 on conv/linear weights only, one
              warmup epoch then cosine to 0, batch 128, 1/12 of the training set held out),
              test accuracy after every epoch, wall-clock time at which each target was first
              reached. One line per evaluation and a final summary line.

    python3 bench/peers/torch_train.py throughput --model ref-cnn resnet-cifar --batch 128 512
    python3 bench/peers/torch_train.py tta --mode eager --targets 0.92 0.93

The networks are Wren's built-in zoo (host/models.cpp) with Wren's parameter names, so the
state_dict keys are the names Wren uses (`conv1.weight`, `stage2.block1.shortcut.conv.weight`,
...). Only the standard library, numpy and torch are used. See bench/peers/README.md.
"""
import argparse
import gzip
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PROG = "torch_train.py"
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"  # Wren's kDefaultDataDir
MODELS = ("ref-cnn", "ref-cnn-bn", "resnet-cifar")
DEFAULT_INPUT = {"ref-cnn": (1, 28, 28), "ref-cnn-bn": (1, 28, 28), "resnet-cifar": (3, 32, 32)}
RESNET_DEFAULT_BLOCKS = 1  # include/wren/models.h: resnet_cifar(..., int blocks_per_stage = 1)


class UsageError(Exception):
    """A problem with the arguments or the data: printed as one line, exit status 1."""


# ------------------------------------------------------------------------------------------------
# Models: exactly Wren's zoo (host/models.cpp), with Wren's parameter names.
# ------------------------------------------------------------------------------------------------

class RefCnn(nn.Module):
    """ref-cnn (and ref-cnn-bn with batch_norm=True).

    The attribute names and forward are those of bench/pytorch_ref_cnn.py's RefCnn, which is fixed
    to 1x28x28 inputs and 10 classes; this one takes any C, H, W and class count. With batch norm
    the convolutions have no bias and bn1 / bn2 follow them, before the ReLU (as Wren's ref_cnn_bn).
    """

    def __init__(self, channels=1, height=28, width=28, classes=10, batch_norm=False):
        super().__init__()
        self.batch_norm = batch_norm
        self.conv1 = nn.Conv2d(channels, 32, 3, padding=1, bias=not batch_norm)
        if batch_norm:
            self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=not batch_norm)
        if batch_norm:
            self.bn2 = nn.BatchNorm2d(64)
        h, w = height // 2 // 2, width // 2 // 2  # two 2x2 max pools, floor
        if h < 1 or w < 1:
            raise UsageError(f"ref-cnn needs inputs of at least 4x4, got {height}x{width}")
        self.fc1 = nn.Linear(64 * h * w, 128)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x):
        x = self.conv1(x)
        if self.batch_norm:
            x = self.bn1(x)
        x = F.max_pool2d(F.relu(x), 2)
        x = self.conv2(x)
        if self.batch_norm:
            x = self.bn2(x)
        x = F.max_pool2d(F.relu(x), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class ConvBn(nn.Module):
    """conv (no bias) + BN, the stem and the projection shortcut: names `.conv`, `.bn`."""

    def __init__(self, cin, cout, kernel, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    """conv1 3x3 (stride) + bn1 + ReLU, conv2 3x3 + bn2, plus the input or a 1x1 conv (stride) +
    BN shortcut where the stride or the channels change; ReLU after the add."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = ConvBn(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        s = x if self.shortcut is None else self.shortcut(x)
        return F.relu(h + s)


class ResNetCifar(nn.Module):
    """resnet-cifar: stem conv 3x3 16 + BN + ReLU, stages of 16/32/64 channels with
    blocks_per_stage basic blocks each (first block of stages 2 and 3: stride 2), global average
    pool, fc. Names: stem.{conv,bn}, stage{s}.block{b}.{conv1,bn1,conv2,bn2,shortcut.{conv,bn}},
    fc."""

    def __init__(self, channels=3, classes=10, blocks_per_stage=RESNET_DEFAULT_BLOCKS):
        super().__init__()
        self.stem = ConvBn(channels, 16, 3, 1)
        cin = 16
        for stage in (1, 2, 3):
            cout = 16 << (stage - 1)
            blocks = OrderedDict()
            for block in range(1, blocks_per_stage + 1):
                stride = 2 if stage > 1 and block == 1 else 1
                blocks[f"block{block}"] = BasicBlock(cin, cout, stride)
                cin = cout
            self.add_module(f"stage{stage}", nn.Sequential(blocks))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def build_model(name, chw, classes, blocks_per_stage):
    c, h, w = chw
    if name == "ref-cnn":
        return RefCnn(c, h, w, classes, batch_norm=False)
    if name == "ref-cnn-bn":
        return RefCnn(c, h, w, classes, batch_norm=True)
    if name == "resnet-cifar":
        return ResNetCifar(c, classes, blocks_per_stage)
    raise UsageError(f"unknown model '{name}' (built in: {', '.join(MODELS)})")


def param_count(model):
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------
# Optimizer and schedule: Wren's semantics (docs/OPTIMIZERS.md, docs/SCHEDULES.md).
# ------------------------------------------------------------------------------------------------

def param_groups(model, weight_decay):
    """Conv and linear weights decay; biases and batch-norm parameters do not (Wren's wd_mult 0)."""
    decay, no_decay = [], []
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if isinstance(module, (nn.Conv2d, nn.Linear)) and pname == "weight":
                decay.append(p)
            else:
                no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model, args, capturable=False):
    """AdamW (decoupled wd), Adam (coupled L2) or SGD (coupled L2), as Wren's --opt."""
    groups = param_groups(model, args.wd)
    kw = {}
    if args.opt_impl == "foreach":
        kw["foreach"] = True
    elif args.opt_impl == "single":
        kw["foreach"] = False
    elif args.opt_impl == "fused":
        kw["fused"] = True
    if args.opt == "sgd":
        if capturable:
            raise UsageError("--cuda-graphs needs --opt adam or adamw (capturable)")
        return torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum,
                               nesterov=args.nesterov, **kw)
    kw.update(lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)
    if capturable:
        kw["capturable"] = True
    cls = torch.optim.AdamW if args.opt == "adamw" else torch.optim.Adam
    return cls(groups, **kw)


def round_half_away(x):
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


class Schedule:
    """lr(t) for step t (from 0), Wren's formulas in double: constant, cosine, linear, onecycle,
    wrapped in a linear warmup of W steps from f*lr(0): for t >= W the wrapped schedule runs on
    t - W over T - W steps."""

    def __init__(self, kind, lr, total_steps, warmup_steps=0, warmup_start_factor=0.0,
                 lr_min=0.0, lr_end=0.0, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4, warmup_flag="--warmup-steps"):
        self.kind, self.lr0, self.T, self.W = kind, lr, total_steps, warmup_steps
        self.f, self.lr_min, self.lr_end = warmup_start_factor, lr_min, lr_end
        self.pct, self.div, self.final_div = pct_start, div_factor, final_div_factor
        if total_steps <= 0:
            raise UsageError("--epochs/--steps give no training steps")
        if warmup_steps < 0 or warmup_steps >= total_steps:
            raise UsageError(f"{warmup_flag} ({warmup_steps} steps) must be smaller than the "
                             f"total steps ({total_steps})")
        if not 0.0 <= warmup_start_factor <= 1.0:
            raise UsageError(f"--warmup-start-factor ({warmup_start_factor}) must be in [0, 1]")
        if kind == "onecycle":
            n = total_steps - warmup_steps
            if not (0.0 < pct_start < 1.0) or pct_start * n <= 1.0:
                raise UsageError(f"--pct-start ({pct_start}) must be in (0, 1) with "
                                 f"pct_start * (T - W) > 1 (T - W = {n})")

    def _wrapped(self, t, n):
        lr = self.lr0
        if self.kind == "constant":
            return lr
        if self.kind == "cosine":
            x = min(t, n) / n
            return self.lr_min + 0.5 * (lr - self.lr_min) * (1.0 + math.cos(math.pi * x))
        if self.kind == "linear":
            return lr + (self.lr_end - lr) * min(t, n) / n
        if self.kind == "onecycle":  # PyTorch OneCycleLR(anneal_strategy='cos', three_phase=False)
            initial = lr / self.div
            final = initial / self.final_div
            rise_end = self.pct * n - 1.0
            fall_end = n - 1.0

            def anneal(a, b, x):
                return b + (a - b) / 2.0 * (math.cos(math.pi * x) + 1.0)
            tt = min(t, n - 1)
            if tt <= rise_end:
                return anneal(initial, lr, tt / rise_end)
            return anneal(lr, final, (tt - rise_end) / (fall_end - rise_end))
        raise UsageError(f"unknown schedule '{self.kind}'")

    def lr(self, t):
        t = max(t, 0)
        n = self.T - self.W
        if t < self.W:
            return self._wrapped(0, n) * (self.f + (1.0 - self.f) * t / self.W)
        return self._wrapped(t - self.W, n)


# ------------------------------------------------------------------------------------------------
# Data: MNIST-family IDX files, raw or gzip (recognised by the magic bytes, as Wren does).
# ------------------------------------------------------------------------------------------------

IDX_STEMS = {
    "train": (("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
              ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte")),
    "test": (("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
             ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte")),
}


def find_idx(data_dir, split, which):
    stems = IDX_STEMS[split][0 if which == "images" else 1]
    names = [s + ext for s in stems for ext in ("", ".gz")]
    for name in names:
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    raise UsageError(f"no IDX {which} for the {split} split in {data_dir}: looked for "
                     f"{', '.join(names)}")


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError(f"{path}: cannot open: {e.strerror}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)  # concatenated members read as one stream
        except (OSError, EOFError, ValueError) as e:
            raise UsageError(f"{path}: corrupt or truncated gzip: {e}") from None
    return data


def read_idx_images(path):
    data = read_bytes(path)
    if len(data) < 16:
        raise UsageError(f"{path}: truncated: {len(data)} bytes, an IDX images header is 16")
    magic, n, h, w = (int.from_bytes(data[i:i + 4], "big") for i in (0, 4, 8, 12))
    if magic != 0x00000803:
        hint = " (an IDX labels file: are the paths swapped?)" if magic == 0x00000801 else ""
        raise UsageError(f"{path}: wrong magic 0x{magic:08x}, expected 0x00000803 "
                         f"(IDX images){hint}")
    if n == 0:
        raise UsageError(f"{path}: contains zero images")
    if len(data) != 16 + n * h * w:
        raise UsageError(f"{path}: expected {n * h * w} bytes of images ({n}x{h}x{w}) after the "
                         f"header, the (decompressed) file has {len(data) - 16}")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, 1, h, w)


def read_idx_labels(path, classes):
    data = read_bytes(path)
    if len(data) < 8:
        raise UsageError(f"{path}: truncated: {len(data)} bytes, an IDX labels header is 8")
    magic, n = (int.from_bytes(data[i:i + 4], "big") for i in (0, 4))
    if magic != 0x00000801:
        hint = " (an IDX images file: are the paths swapped?)" if magic == 0x00000803 else ""
        raise UsageError(f"{path}: wrong magic 0x{magic:08x}, expected 0x00000801 "
                         f"(IDX labels){hint}")
    if len(data) != 8 + n:
        raise UsageError(f"{path}: expected {n} label bytes after the header, the "
                         f"(decompressed) file has {len(data) - 8}")
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    bad = np.nonzero(labels >= classes)[0]
    if bad.size:
        raise UsageError(f"{path}: label {labels[bad[0]]} at index {bad[0]} is out of range "
                         f"[0, {classes})")
    return labels


def load_idx_split(data_dir, split, classes):
    images_path = find_idx(data_dir, split, "images")
    labels_path = find_idx(data_dir, split, "labels")
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path, classes)
    if images.shape[0] != labels.shape[0]:
        raise UsageError(f"label/image count mismatch: {images_path} has {images.shape[0]} "
                         f"images but {labels_path} has {labels.shape[0]} labels")
    return images, labels


def normalization(images_u8):
    """Per-channel mean and population std of x/255 (exact integer sums, then double), as Wren's
    compute_normalization; a zero-variance channel gets std 1."""
    c = images_u8.shape[1]
    mean, std = [], []
    for ch in range(c):
        x = images_u8[:, ch].astype(np.uint64)
        count = x.size
        s1, s2 = int(x.sum()), int((x * x).sum())
        m = s1 / (count * 255.0)
        var = s2 / (count * 255.0 * 255.0) - m * m
        sd = math.sqrt(var) if var > 0 else 1.0
        mean.append(m)
        std.append(sd)
    return mean, std


# ------------------------------------------------------------------------------------------------
# Common helpers
# ------------------------------------------------------------------------------------------------

def pick_device(name):
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device visible to PyTorch "
                         f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")
    return torch.device(name)


def setup_backend(args, device):
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        tf32 = args.math == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = args.cudnn_benchmark == "on"


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_mib():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def emit(obj):
    print(json.dumps(obj), flush=True)


def error_text(e):
    text = f"{type(e).__name__}: {e}".strip()
    first = text.splitlines()[0] if text else type(e).__name__
    return first[:1000]


def env_info(args, device):
    return {"torch": torch.__version__, "device": device.type, "device_name": device_name(device),
            "threads": torch.get_num_threads(), "math": args.math if device.type == "cuda"
            else "fp32", "cudnn_benchmark": (args.cudnn_benchmark == "on")
            if device.type == "cuda" else None, "opt": args.opt, "opt_impl": args.opt_impl}


def compile_model(model, args):
    if not hasattr(torch, "compile"):
        raise RuntimeError(f"torch.compile is not available in torch {torch.__version__} "
                           "(needs 2.0 or later)")
    return torch.compile(model, mode=None if args.compile_mode == "default" else
                         args.compile_mode, dynamic=False)


def reset_compiler():
    dynamo = getattr(torch, "_dynamo", None)
    if dynamo is not None and hasattr(dynamo, "reset"):
        dynamo.reset()


def parse_chw(text):
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--input {text}: expected CxHxW, e.g. 3x32x32") from None
    if min(c, h, w) < 1:
        raise UsageError(f"--input {text}: every dimension must be positive")
    return c, h, w


# ------------------------------------------------------------------------------------------------
# throughput
# ------------------------------------------------------------------------------------------------

def throughput_one(args, device, model_name, batch, mode, graphs):
    """One (model, batch, mode) measurement; returns the JSON object (or one with "error")."""
    label = mode + ("+cudagraph" if graphs else "")
    chw = parse_chw(args.input) if args.input else DEFAULT_INPUT[model_name]
    row = {"peer": "pytorch", "bench": "throughput", "model": model_name, "batch": batch,
           "mode": label, "input": list(chw), "classes": args.classes}
    if mode == "compile":
        row["compile_mode"] = args.compile_mode
    row.update(env_info(args, device))
    if graphs and device.type != "cuda":
        row["skipped"] = "--cuda-graphs needs --device cuda"
        return row
    reset_compiler()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(args.seed)
    model = build_model(model_name, chw, args.classes, args.blocks).to(device)
    row["params"] = param_count(model)
    opt = make_optimizer(model, args, capturable=graphs)
    images = torch.rand((batch,) + tuple(chw), device=device)
    labels = torch.randint(0, args.classes, (batch,), device=device)
    net = model
    try:
        if mode == "compile":
            net = compile_model(model, args)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(images), labels)
            loss.backward()
            opt.step()

        run = step
        sync(device)
        t0 = time.perf_counter()
        if graphs:
            # Whole-step capture (PyTorch's "whole network capture" recipe): warm up on a side
            # stream, then record forward, backward and the capturable optimizer step once.
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(max(args.warmup, 3)):
                    step()
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                loss = F.cross_entropy(net(images), labels)
                loss.backward()
                opt.step()
            run = graph.replay
            run()
        else:
            for _ in range(args.warmup):
                step()
        sync(device)
        row["warmup_s"] = round(time.perf_counter() - t0, 3)  # includes compilation / capture
        runs = []
        for _ in range(args.repeats):
            if device.type == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(args.steps):
                    run()
                end.record()
                end.synchronize()
                runs.append(start.elapsed_time(end) / args.steps)
            else:
                start = time.perf_counter()
                for _ in range(args.steps):
                    run()
                runs.append((time.perf_counter() - start) * 1e3 / args.steps)
        loss_now = F.cross_entropy(net(images), labels).item() if not graphs else None
    except Exception as e:  # noqa: BLE001 - compile/capture failures become a JSON row
        row["error"] = error_text(e)
        return row
    ms = statistics.median(runs)
    row.update({"steps": args.steps, "repeats": args.repeats, "warmup": args.warmup,
                "ms_per_step": round(ms, 4), "ms_min": round(min(runs), 4),
                "ms_max": round(max(runs), 4), "img_per_s": round(batch / ms * 1e3, 1)})
    if loss_now is not None and not math.isfinite(loss_now):
        row["note"] = f"non-finite loss after the timed steps ({loss_now})"
    if device.type == "cuda":
        row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    row["peak_rss_mib"] = rss_mib()  # process-wide maximum so far
    return row


def cmd_throughput(args):
    device = pick_device(args.device)
    setup_backend(args, device)
    for m in args.model:
        if m not in MODELS:
            raise UsageError(f"unknown model '{m}' (built in: {', '.join(MODELS)})")
    modes = ["eager", "compile"] if args.mode == "both" else [args.mode]
    for model_name in args.model:
        for batch in args.batch:
            for mode in modes:
                for graphs in ([False, True] if args.cuda_graphs else [False]):
                    emit(throughput_one(args, device, model_name, batch, mode, graphs))
    return 0


# ------------------------------------------------------------------------------------------------
# tta: time to accuracy
# ------------------------------------------------------------------------------------------------

def augment(u8, flip, crop, gen):
    """Wren's training augmentation (docs/DATA.md) on a uint8 batch [B, C, H, W], on its device:
    a random H x W crop of the image zero-padded by `crop` pixels (offsets uniform in
    [0, 2*crop], the padding the raw byte 0), then a horizontal flip with probability 1/2 (as
    torchvision's crop-then-flip). The same distribution as Wren's, not Wren's Philox draws."""
    b, c, h, w = u8.shape
    dev = u8.device
    if crop:
        padded = torch.zeros((b, c, h + 2 * crop, w + 2 * crop), dtype=u8.dtype, device=dev)
        padded[:, :, crop:crop + h, crop:crop + w] = u8
        oy = torch.randint(0, 2 * crop + 1, (b,), device=dev, generator=gen)
        ox = torch.randint(0, 2 * crop + 1, (b,), device=dev, generator=gen)
        rows = torch.arange(h, device=dev)[None, :] + oy[:, None]  # [B, H]
        cols = torch.arange(w, device=dev)[None, :] + ox[:, None]  # [B, W]
        u8 = padded[torch.arange(b, device=dev)[:, None, None, None],
                    torch.arange(c, device=dev)[None, :, None, None],
                    rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        mirror = torch.rand((b,), device=dev, generator=gen) < 0.5
        u8 = torch.where(mirror[:, None, None, None], u8.flip(3), u8)
    return u8


class DeviceData:
    """One split held on the device as uint8 [N, C, H, W] plus int64 labels; batches are
    gathered and normalized on the device."""

    def __init__(self, images_u8, labels_u8, device, mean, std):
        self.images = torch.from_numpy(np.require(images_u8, requirements=["C", "W"])).to(device)
        self.labels = torch.from_numpy(labels_u8.astype(np.int64)).to(device)
        c = images_u8.shape[1]
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, c, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, c, 1, 1)

    def __len__(self):
        return self.labels.shape[0]

    def normalize(self, u8):
        # Wren's value = (x / 255 - mean[c]) / std[c], in float
        return u8.float().div_(255.0).sub_(self.mean).div_(self.std)

    def batch(self, index, flip=False, crop=0, gen=None):
        u8 = self.images.index_select(0, index)
        if flip or crop:
            u8 = augment(u8, flip, crop, gen)
        return self.normalize(u8), self.labels.index_select(0, index)

    def slice(self, start, stop):
        return self.normalize(self.images[start:stop]), self.labels[start:stop]


@torch.no_grad()
def evaluate(model, net, data, batch):
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=data.labels.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.labels.device)
    for start in range(0, len(data), batch):
        x, y = data.slice(start, min(start + batch, len(data)))
        logits = net(x)
        correct += (logits.argmax(1) == y).sum()
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
    model.train(was_training)
    n = len(data)
    return correct.item() / n, loss_sum.item() / n


def cmd_tta(args):
    device = pick_device(args.device)
    setup_backend(args, device)
    if not args.eval_batch:
        args.eval_batch = 1000 if device.type == "cuda" else args.batch
    if args.model not in MODELS:
        raise UsageError(f"unknown model '{args.model}' (built in: {', '.join(MODELS)})")
    if not os.path.isdir(args.data_dir):
        raise UsageError(f"--data-dir {args.data_dir}: no such directory (expected the MNIST-"
                         "format IDX files train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte"
                         "[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])")
    targets = sorted(set(args.targets))
    if any(not 0.0 < t <= 1.0 for t in targets):
        raise UsageError("--targets are accuracies in (0, 1], e.g. 0.92")

    # --- data: split like Wren (val = 1/12 of the training set by default, drawn by the seed)
    train_x, train_y = load_idx_split(args.data_dir, "train", args.classes)
    test_x, test_y = load_idx_split(args.data_dir, "test", args.classes)
    count = train_x.shape[0]
    val_count = count // 12 if args.val < 0 else args.val
    if val_count >= count:
        raise UsageError(f"--val ({val_count}) must be smaller than the training set "
                         f"({count} images)")
    perm = np.random.RandomState(args.seed).permutation(count)
    val_idx, train_idx = np.sort(perm[:val_count]), np.sort(perm[val_count:])
    mean, std = normalization(train_x[train_idx])
    steps_per_epoch = len(train_idx) // args.batch  # the last partial batch is dropped
    if steps_per_epoch == 0:
        raise UsageError(f"--batch {args.batch} is larger than the {len(train_idx)} training "
                         "images")
    total_steps = args.steps if args.steps else round_half_away(args.epochs * steps_per_epoch)
    if total_steps <= 0:
        raise UsageError("--epochs/--steps give no training steps")
    default_warmup = (args.sched is None and args.warmup_epochs is None
                      and args.warmup_steps is None)
    sched = args.sched or "cosine"
    if args.warmup_steps is not None and args.warmup_epochs is not None:
        raise UsageError("give --warmup-epochs or --warmup-steps, not both")
    if args.warmup_steps is not None:
        warmup = args.warmup_steps
    elif args.warmup_epochs is not None:
        warmup = round_half_away(args.warmup_epochs * steps_per_epoch)
    else:
        warmup = steps_per_epoch if default_warmup else 0
    if default_warmup and warmup >= total_steps:
        warmup = total_steps // 10  # Wren: the default warmup shrinks to a tenth of a short run
    schedule = Schedule(sched, args.lr, total_steps, warmup, args.warmup_start_factor,
                        lr_min=args.lr_min, lr_end=args.lr_end, pct_start=args.pct_start,
                        div_factor=args.div_factor, final_div_factor=args.final_div_factor,
                        warmup_flag="--warmup-epochs" if args.warmup_epochs is not None
                        else "--warmup-steps")
    chw = tuple(int(v) for v in train_x.shape[1:])

    # --- model, optimizer, data on the device
    torch.manual_seed(args.seed)
    model = build_model(args.model, chw, args.classes, args.blocks).to(device)
    opt = make_optimizer(model, args)
    train = DeviceData(train_x[train_idx], train_y[train_idx], device, mean, std)
    val = DeviceData(train_x[val_idx], train_y[val_idx], device, mean, std) if val_count else None
    test = DeviceData(test_x, test_y, device, mean, std)
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)
    net = model
    recipe = {"model": args.model, "params": param_count(model), "input": list(chw),
              "opt": args.opt, "lr": args.lr, "wd": args.wd,
              "wd_mode": "decoupled" if args.opt == "adamw" else "coupled",
              "betas": [args.beta1, args.beta2] if args.opt != "sgd" else None,
              "eps": args.eps if args.opt != "sgd" else None,
              "momentum": args.momentum if args.opt == "sgd" else None,
              "no_decay": "biases and batch-norm parameters", "sched": sched,
              "warmup_steps": warmup, "warmup_start_factor": args.warmup_start_factor,
              "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
              "epochs": total_steps / steps_per_epoch, "batch": args.batch, "seed": args.seed,
              "augment": {"flip": args.flip, "crop": args.crop},
              "train_images": len(train_idx), "val_images": val_count,
              "test_images": len(test), "norm_mean": [round(m, 7) for m in mean],
              "norm_std": [round(s, 7) for s in std],
              "label_smoothing": 0.0, "mode": args.mode}
    if sched == "onecycle":
        recipe.update(pct_start=args.pct_start, div_factor=args.div_factor,
                      final_div_factor=args.final_div_factor)
    env = env_info(args, device)

    # --- untimed warm-up: compilation (compile mode), cuDNN autotuning, lazy CUDA init. One
    # forward + backward on the first training batch and one eval forward per eval batch shape;
    # no optimizer step, and the parameters and BN buffers are restored afterwards, so training
    # starts from the same state as without it. --no-warmup puts all of that in the clock.
    sync(device)
    t_warm = time.perf_counter()
    try:
        if args.mode == "compile":
            net = compile_model(model, args)
        if not args.no_warmup:
            saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
            x, y = train.batch(torch.arange(args.batch, device=device))
            F.cross_entropy(net(x), y).backward()
            shapes = {min(args.eval_batch, len(test)), len(test) % args.eval_batch}
            if val is not None:
                shapes |= {min(args.eval_batch, len(val)), len(val) % args.eval_batch}
            model.eval()
            with torch.no_grad():
                for n in sorted(s for s in shapes if s > 0):
                    net(test.slice(0, n)[0] if n <= len(test) else val.slice(0, n)[0])
            model.train()
            model.load_state_dict(saved)
            opt.zero_grad(set_to_none=True)
            sync(device)
    except Exception as e:  # noqa: BLE001 - a compile failure becomes a JSON line
        emit({"peer": "pytorch", "bench": "tta", "mode": args.mode, "error": error_text(e),
              "recipe": recipe, **env})
        return 1
    warmup_s = time.perf_counter() - t_warm

    # --- training, timed from here
    reached = {t: None for t in targets}
    best = 0.0
    step = 0
    stop_reason = "completed"
    eval_s = 0.0
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct_sum = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    order = None
    stop_at = total_steps
    if args.stop_after_steps:
        stop_at = min(stop_at, args.stop_after_steps)
    model.train()
    sync(device)
    t0 = time.perf_counter()

    def do_eval(kind):
        nonlocal eval_s, best, loss_sum, correct_sum, seen
        sync(device)
        te = time.perf_counter()
        train_loss = loss_sum.item() / max(seen, 1)
        train_acc = correct_sum.item() / max(seen, 1)
        val_acc = evaluate(model, net, val, args.eval_batch)[0] if val is not None else None
        test_acc, test_loss = evaluate(model, net, test, args.eval_batch)
        sync(device)
        now = time.perf_counter()
        eval_s += now - te
        elapsed = now - t0
        best = max(best, test_acc)
        for t in targets:
            if reached[t] is None and test_acc >= t:
                reached[t] = {"seconds": round(elapsed, 3),
                              "train_seconds": round(elapsed - eval_s, 3),
                              "step": step, "epoch": round(step / steps_per_epoch, 4)}
        emit({"event": kind, "epoch": round(step / steps_per_epoch, 4), "step": step,
              "train_loss": round(train_loss, 5), "train_acc": round(train_acc, 5),
              "val_acc": None if val_acc is None else round(val_acc, 5),
              "test_acc": round(test_acc, 5), "test_loss": round(test_loss, 5),
              "lr": schedule.lr(step - 1) if step else schedule.lr(0),
              "elapsed_s": round(elapsed, 3), "train_s": round(elapsed - eval_s, 3)})
        loss_sum.zero_()
        correct_sum.zero_()
        seen = 0
        return all(v is not None for v in reached.values())

    done = False
    while step < stop_at and not done:
        pos = step % steps_per_epoch
        if pos == 0:
            order = train_index_order(len(train), device, gen, args.no_shuffle)
        idx = order[pos * args.batch:(pos + 1) * args.batch]
        x, y = train.batch(idx, args.flip, args.crop, gen)
        lr = schedule.lr(step)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        with torch.no_grad():
            loss_sum += loss.detach().double() * y.shape[0]
            correct_sum += (logits.argmax(1) == y).sum()
        seen += y.shape[0]
        step += 1
        epoch_end = step % steps_per_epoch == 0 or step == total_steps
        timed_out = args.max_seconds and time.perf_counter() - t0 >= args.max_seconds
        if epoch_end or step == stop_at or timed_out or (
                args.eval_every and step % args.eval_every == 0):
            all_reached = do_eval("epoch" if epoch_end else "eval")
            if all_reached and not args.no_early_stop:
                stop_reason, done = "targets", True
            elif timed_out:
                stop_reason, done = "max_seconds", True
            elif step == stop_at and stop_at < total_steps:
                stop_reason = "stop_after_steps"
    sync(device)
    total_s = time.perf_counter() - t0
    summary = {"peer": "pytorch", "bench": "tta", "mode": args.mode,
               "targets": {f"{t:g}": reached[t] for t in targets},
               "best_test_acc": round(best, 5), "steps_run": step,
               "epochs_run": round(step / steps_per_epoch, 4), "stopped": stop_reason,
               "elapsed_s": round(total_s, 3), "train_s": round(total_s - eval_s, 3),
               "eval_s": round(eval_s, 3), "warmup_s": round(warmup_s, 3),
               "clock": "from the first step; warm-up (compilation, autotuning) excluded"
               if not args.no_warmup else "from the first step; nothing warmed up",
               "recipe": recipe, **env}
    if device.type == "cuda":
        summary["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    summary["peak_rss_mib"] = rss_mib()
    emit(summary)
    return 0


def train_index_order(n, device, gen, no_shuffle):
    if no_shuffle:
        return torch.arange(n, device=device)
    return torch.randperm(n, device=device, generator=gen)


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------

def add_common(p):
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                   help="auto: cuda when PyTorch sees a GPU, else cpu (default auto)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads (default: PyTorch's own choice)")
    p.add_argument("--math", default="fp32", choices=["fp32", "tf32"],
                   help="cuda matrix products and convolutions: fp32 (TF32 off in cuBLAS and "
                        "cuDNN, as Wren's default) or tf32 (default fp32)")
    p.add_argument("--cudnn-benchmark", default="on", choices=["on", "off"],
                   help="torch.backends.cudnn.benchmark (default on; autotuning happens in the "
                        "untimed warm-up)")
    p.add_argument("--compile-mode", default="default",
                   choices=["default", "reduce-overhead", "max-autotune",
                            "max-autotune-no-cudagraphs"],
                   help="torch.compile mode for --mode compile (default: default)")
    p.add_argument("--blocks", type=int, default=RESNET_DEFAULT_BLOCKS,
                   help="resnet-cifar blocks per stage (default 1: ResNet-8, as Wren)")
    p.add_argument("--classes", type=int, default=10, help="classes (default 10)")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed (default 0)")
    p.add_argument("--opt", default="adamw", choices=["adamw", "adam", "sgd"],
                   help="adamw (decoupled wd), adam / sgd (coupled L2), as Wren (default adamw)")
    p.add_argument("--opt-impl", default="default", choices=["default", "foreach", "fused",
                                                             "single"],
                   help="PyTorch optimizer implementation: default (PyTorch picks; foreach on "
                        "CUDA), foreach, fused (CUDA, torch>=2.0), single (per-tensor loop)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--wd", type=float, default=5e-4,
                   help="weight decay on conv/linear weights only (default 5e-4)")
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0)")
    p.add_argument("--nesterov", action="store_true", help="SGD Nesterov momentum (as wren --nesterov)")


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    tp = sub.add_parser("throughput", help="training steps per second on a synthetic batch")
    add_common(tp)
    tp.add_argument("--model", nargs="+", default=["ref-cnn"], help=f"{', '.join(MODELS)}")
    tp.add_argument("--batch", type=int, nargs="+", default=[128], help="batch sizes")
    tp.add_argument("--input", default=None,
                    help="CxHxW of the synthetic images (default: 1x28x28 for ref-cnn*, "
                         "3x32x32 for resnet-cifar)")
    tp.add_argument("--mode", default="eager", choices=["eager", "compile", "both"])
    tp.add_argument("--steps", type=int, default=50, help="steps per timed run (default 50)")
    tp.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    tp.add_argument("--repeats", type=int, default=5,
                    help="timed runs; the median is reported (default 5)")
    tp.add_argument("--cuda-graphs", action="store_true",
                    help="also time each mode with the whole step (forward, backward, "
                         "capturable optimizer) captured in one CUDA graph")

    tt = sub.add_parser("tta", help="time to test accuracy on Fashion-MNIST (IDX files)")
    add_common(tt)
    tt.add_argument("--model", default="ref-cnn", help=f"{', '.join(MODELS)} (default ref-cnn)")
    tt.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                    help=f"directory of MNIST-format IDX files, raw or .gz (default "
                         f"{DEFAULT_DATA_DIR})")
    tt.add_argument("--mode", default="eager", choices=["eager", "compile"])
    tt.add_argument("--epochs", type=float, default=5.0, help="epochs, fractions allowed "
                                                              "(default 5)")
    tt.add_argument("--steps", type=int, default=0, help="total steps; overrides --epochs")
    tt.add_argument("--stop-after-steps", type=int, default=0,
                    help="stop after N steps, the schedule still spanning the whole run")
    tt.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    tt.add_argument("--eval-batch", type=int, default=0,
                    help="evaluation batch (default: 1000 on cuda, --batch on cpu, where large "
                         "batches are slower)")
    tt.add_argument("--val", type=int, default=-1,
                    help="validation images held out of the training set (-1: 1/12, as Wren)")
    tt.add_argument("--no-shuffle", action="store_true", help="keep the training set in order")
    tt.add_argument("--flip", action="store_true",
                    help="augment: random horizontal flip (as wren train --flip)")
    tt.add_argument("--crop", type=int, default=0,
                    help="augment: random crop after zero padding by N pixels (wren --crop N)")
    tt.add_argument("--sched", default=None, choices=["cosine", "onecycle", "linear", "constant"],
                    help="LR schedule (default cosine with a 1-epoch warmup)")
    tt.add_argument("--warmup-epochs", type=float, default=None,
                    help="linear warmup in epochs (default 1 with the default schedule, else 0)")
    tt.add_argument("--warmup-steps", type=int, default=None, help="linear warmup in steps")
    tt.add_argument("--warmup-start-factor", type=float, default=0.0)
    tt.add_argument("--lr-min", type=float, default=0.0, help="cosine floor (default 0)")
    tt.add_argument("--lr-end", type=float, default=0.0, help="linear final LR (default 0)")
    tt.add_argument("--pct-start", type=float, default=0.3, help="onecycle (default 0.3)")
    tt.add_argument("--div-factor", type=float, default=25.0, help="onecycle (default 25)")
    tt.add_argument("--final-div-factor", type=float, default=1e4,
                    help="onecycle (default 1e4)")
    tt.add_argument("--targets", type=float, nargs="+", default=[0.92, 0.93],
                    help="test accuracies to time (default 0.92 0.93)")
    tt.add_argument("--eval-every", type=int, default=0,
                    help="also evaluate every N steps (default: after each epoch only)")
    tt.add_argument("--max-seconds", type=float, default=0,
                    help="stop after this much training wall-clock (default: no limit)")
    tt.add_argument("--no-early-stop", action="store_true",
                    help="keep training after every target is reached")
    tt.add_argument("--no-warmup", action="store_true",
                    help="no untimed warm-up: compilation and autotuning count in the clock")

    args = parser.parse_args(argv)
    try:
        if args.command == "throughput":
            for name, v in (("--steps", args.steps), ("--repeats", args.repeats)):
                if v < 1:
                    raise UsageError(f"{name} must be at least 1")
            if args.warmup < 0 or any(b < 1 for b in args.batch):
                raise UsageError("--warmup must be >= 0 and every --batch >= 1")
            return cmd_throughput(args)
        if args.batch < 1 or args.eval_batch < 0:
            raise UsageError("--batch must be at least 1 and --eval-batch at least 0")
        return cmd_tta(args)
    except UsageError as e:
        print(f"{PROG} {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

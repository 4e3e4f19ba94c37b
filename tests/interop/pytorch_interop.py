#!/usr/bin/env python3
"""Checkpoints move between Wren and PyTorch unchanged (docs/ARCHITECTURE.md, design decision 6).

1. Wren -> PyTorch: `wren train` a few steps of ref-cnn on Fashion-MNIST; load
   last.safetensors into a PyTorch module whose attributes are conv1, conv2, fc1, fc2
   (load_state_dict strict: the names and shapes must be exactly PyTorch's); its test accuracy,
   computed by PyTorch with the normalization stored in the checkpoint, must match `wren eval`.
2. PyTorch -> Wren: save a freshly initialised PyTorch model as safetensors; `wren train
   --init-from` it with a learning rate too small to change a float weight, then `wren eval`
   must give PyTorch's accuracy for that model.
Accuracies may differ by a few images of 10,000 (oneDNN vs OpenBLAS rounding can flip a
near-tie); the test allows 5.

Exit 77 (CTest: skipped) without python3-torch or the dataset.
    python3 tests/interop/pytorch_interop.py build/release/wren /usr/share/datasets/fashion-mnist
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError:
    print("skipped: python3-torch is not installed")
    sys.exit(77)


# The PyTorch twin of Wren's ref-cnn, shared with the CPU benchmark's peer script.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from pytorch_ref_cnn import RefCnn  # noqa: E402


DTYPES = {"F32": (torch.float32, 4), "F64": (torch.float64, 8), "I64": (torch.int64, 8),
          "I32": (torch.int32, 4), "U8": (torch.uint8, 1)}


def load_safetensors(path):
    """The safetensors layout, read directly (safetensors.torch.load_file where installed)."""
    try:
        from safetensors.torch import load_file
        from safetensors import safe_open
        with safe_open(path, "pt") as f:
            return load_file(path), f.metadata()
    except ImportError:
        pass
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        dtype, size = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        raw = bytearray(data[8 + n + begin:8 + n + end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, meta


def save_safetensors(path, tensors):
    """What safetensors.torch.save_file writes (F32 only, sorted names, 8-byte padded header)."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        blob = tensors[name].detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_idx(path):
    data = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 0x803:
        h, w = struct.unpack(">II", data[8:16])
        return torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8).reshape(count, 1, h, w)
    return torch.frombuffer(bytearray(data[8:]), dtype=torch.uint8).long()


def accuracy(model, images, labels, mean, std):
    x = (images.float() / 255.0 - mean) / std
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return (pred == labels).sum().item()


def wren_eval_correct(wren, checkpoint):
    out = subprocess.run([wren, "eval", checkpoint], check=True, capture_output=True,
                         text=True).stdout
    first = out.splitlines()[0]  # "<path>: 10000 images, accuracy 0.8123, loss 0.5"
    count = int(first.split(": ")[1].split(" images")[0])
    acc = float(first.split("accuracy ")[1].split(",")[0])
    return round(acc * count), first


def main():
    wren, data_dir = sys.argv[1], sys.argv[2]
    test_images = os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")
    if not os.path.exists(test_images):
        print(f"skipped: no Fashion-MNIST under {data_dir}")
        sys.exit(77)
    images = read_idx(test_images)
    labels = read_idx(os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz"))
    torch.set_num_threads(2)
    failures = 0
    with tempfile.TemporaryDirectory() as work:
        common = ["--data-dir", data_dir, "--no-progress", "--no-test", "--val", "1000"]
        # 1. Wren -> PyTorch.
        run = os.path.join(work, "run")
        subprocess.run([wren, "train", "--steps", "40", "--out", run] + common, check=True,
                       capture_output=True)
        tensors, meta = load_safetensors(os.path.join(run, "last.safetensors"))
        model = RefCnn()
        model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("optim.")},
                              strict=True)
        norm = json.loads(meta["wren.normalization"])
        mean, std = norm["mean"][0], norm["std"][0]
        torch_correct = accuracy(model, images, labels, mean, std)
        wren_correct, line = wren_eval_correct(wren, os.path.join(run, "last.safetensors"))
        print(f"Wren -> PyTorch: PyTorch {torch_correct}/10000 correct, wren eval: {line}")
        failures += abs(torch_correct - wren_correct) > 5

        # 2. PyTorch -> Wren.
        torch.manual_seed(3)
        fresh = RefCnn()
        exported = os.path.join(work, "pytorch.safetensors")
        save_safetensors(exported, fresh.state_dict())
        run2 = os.path.join(work, "run2")
        subprocess.run([wren, "train", "--init-from", exported, "--steps", "1", "--opt", "sgd",
                        "--sched", "constant", "--lr", "1e-30", "--wd", "0", "--out", run2]
                       + common, check=True, capture_output=True)
        _, meta2 = load_safetensors(os.path.join(run2, "last.safetensors"))
        norm2 = json.loads(meta2["wren.normalization"])
        torch_correct = accuracy(fresh, images, labels, norm2["mean"][0], norm2["std"][0])
        wren_correct, line = wren_eval_correct(wren, os.path.join(run2, "last.safetensors"))
        print(f"PyTorch -> Wren: PyTorch {torch_correct}/10000 correct, wren eval: {line}")
        failures += abs(torch_correct - wren_correct) > 5
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

"""The GPU backends on a real NVIDIA GPU, outside a study: latency and accuracy.

    python benchmarks/gpu_backends.py --model DIR [--seq-len 16,128] [--calls 300]

For each PyTorch CUDA configuration (fp32 / fp16 / bf16, eager and compiled with CUDA
graphs), loaded through tuner.backends.torch_cuda exactly as a trial loads it: the
median and p90 of --calls timed calls (each ends with torch.cuda.synchronize()),
and the mean-pooled embedding cosine to fp32 on the GPU (min over the built-in
sentences). Needs only torch with CUDA and transformers, so it runs on a lent GPU
machine without the rest of tuner's dependencies; docs/benchmarks.md has its output.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = [
    {"precision": "fp32", "compile": "none"},
    {"precision": "fp16", "compile": "none"},
    {"precision": "bf16", "compile": "none"},
    {"precision": "fp16", "compile": "reduce-overhead"},
    {"precision": "bf16", "compile": "reduce-overhead"},
]


def pooled(output, mask):
    import numpy as np

    m = mask[..., None].astype(np.float32)
    return (output * m).sum(axis=1) / m.sum(axis=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--seq-len", default="16,128")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()

    import numpy as np
    import torch

    from tuner.backends.torch_cuda import TorchCudaBackend, cuda_unavailable_reason
    from tuner.model import DEFAULT_EVAL_TEXTS, eval_inputs, make_inputs, resolve_model

    why = cuda_unavailable_reason()
    if why:
        print(f"no GPU run: {why}", file=sys.stderr)
        return 2
    model = resolve_model(args.model)
    backend = TorchCudaBackend()
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, model {model.model_id}")
    print("| configuration | seq | median ms | p90 ms | cosine to fp32 (min) | first call s |")
    print("|---|---|---|---|---|---|")
    for seq_len in [int(s) for s in args.seq_len.split(",")]:
        inputs = make_inputs(model, seq_len)
        evals = eval_inputs(model, list(DEFAULT_EVAL_TEXTS), seq_len)
        reference = None
        for cfg in CONFIGS:
            config = {**cfg, "threads": 1}
            predictor = backend.load(model, config, None)
            started = time.perf_counter()
            outs = [predictor.to_numpy(predictor.run(predictor.bind(x))) for x in evals]
            first = time.perf_counter() - started
            vectors = [pooled(o, x["attention_mask"]) for o, x in zip(outs, evals)]
            if reference is None:
                reference = vectors
            cos = min(float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))
                      for a, b in zip(vectors, reference))
            bound = predictor.bind(inputs)
            for _ in range(30):
                predictor.run(bound)
            samples = []
            for _ in range(args.calls):
                t = time.perf_counter()
                predictor.run(bound)
                samples.append((time.perf_counter() - t) * 1000)
            samples.sort()
            print(f"| torch_cuda {cfg['precision']} compile={cfg['compile']} | {seq_len} | "
                  f"{statistics.median(samples):.3f} | {samples[int(0.9 * len(samples))]:.3f} | {cos:.5f} | "
                  f"{first:.1f} |", flush=True)
            del predictor
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
